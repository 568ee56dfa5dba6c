"""A minimal OTLP/gRPC trace receiver: serves the collector's TraceService on
127.0.0.1 (ephemeral port), prints `listening PORT`, and appends every span it
receives to a JSON-lines file.

Usage: otlp_receiver.py OUT_FILE

Each line: {"trace_id", "span_id", "parent_span_id", "name", "service"}
(ids in hex). Runs until killed.
"""

import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock, open(self.out, "a") as f:
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    None,
                )
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        record = {
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "name": span.name,
                            "service": service,
                        }
                        f.write(json.dumps(record) + "\n")
        return trace_service_pb2.ExportTraceServiceResponse()


def main() -> int:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(sys.argv[1]), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)
    server.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
