from serving.console.routes import console_routes

__all__ = ["console_routes"]
