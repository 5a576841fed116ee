"""Wire contracts shared by export and serving: Triton's ModelConfig and Open Inference Protocol
messages (``model_config_pb2``, ``grpc_service_pb2``, ``grpc_service_pb2_grpc``, generated from the
.proto files here by ``python -m protos.generate``) and ``config_text`` for config.pbtxt.

Deliberately imports nothing: the generator must run even when the committed stubs are stale.
"""
