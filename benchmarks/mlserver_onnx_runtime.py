"""An ONNX Runtime inference runtime for MLServer (it ships none), as a user would write one.

`peers.py` copies this file into the MLServer model folder beside model-settings.json, which names
`mlserver_onnx_runtime.OnnxRuntimeModel` as its implementation and the .onnx file as its uri. It
runs inside MLServer's own virtual environment: it imports nothing from dnnzoo. The session has
default SessionOptions; decoding and encoding use MLServer's NumpyCodec, its ordinary path.
"""

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        self._session = ort.InferenceSession(self.settings.parameters.uri, providers=["CPUExecutionProvider"])
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        arrays = self._session.run(None, feed)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(name, array) for name, array in zip(self._outputs, arrays)],
        )
