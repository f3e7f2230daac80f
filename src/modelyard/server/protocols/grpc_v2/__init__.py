"""The Open Inference Protocol's gRPC service definition and its generated Python modules.

``grpc_predict_v2.proto`` is the published OIP file plus the Triton extension RPCs tritonclient.grpc
calls; ``grpc_predict_v2_pb2*.py`` are generated from it by ``scripts/gen_grpc`` (never edit them by
hand). Importing them needs grpcio and protobuf: the ``grpc`` extra.
"""
