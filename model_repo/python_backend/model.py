"""Triton Python-backend model that serves an ONNX file with onnxruntime.

Used where the serving image has only Triton's Python backend (the dev cluster). It runs
inside the backend's stub environment (numpy<2, onnxruntime), so it imports nothing from
Gantry. Requests that Triton's dynamic batcher hands over together are concatenated along
the batch axis and run as one onnxruntime call.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = config.get("parameters") or {}
        threads = int((params.get("intra_op_threads") or {}).get("string_value") or 1)
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]
        self.out_dtypes = {
            o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]
        }
        self.batched = int(config.get("max_batch_size") or 0) > 0

    def _run(self, feeds):
        results = self.session.run(self.outputs, feeds)
        pairs = zip(self.outputs, results, strict=True)
        return [np.ascontiguousarray(r, dtype=self.out_dtypes[n]) for n, r in pairs]

    def _respond(self, arrays):
        tensors = [pb_utils.Tensor(n, a) for n, a in zip(self.outputs, arrays, strict=True)]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _feeds(self, request):
        return {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}

    def execute(self, requests):
        feeds = []
        try:
            feeds = [self._feeds(r) for r in requests]
            if self.batched and len(feeds) > 1:
                sizes = [f[self.inputs[0]].shape[0] for f in feeds]
                merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
                outputs = self._run(merged)
                cuts = np.cumsum(sizes)[:-1]
                parts = [np.split(o, cuts) for o in outputs]
                return [self._respond([p[i] for p in parts]) for i in range(len(requests))]
        except Exception:  # e.g. differing non-batch dims: fall back to one run per request
            pass
        responses = []
        for index, request in enumerate(requests):
            try:
                feed = feeds[index] if index < len(feeds) else self._feeds(request)
                responses.append(self._respond(self._run(feed)))
            except Exception as err:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err))))
        return responses

    def finalize(self):
        self.session = None
