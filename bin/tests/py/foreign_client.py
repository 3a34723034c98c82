"""A foreign gRPC client for huddle: Python grpcio that knows nothing of
huddle's .proto files and discovers them through server reflection.

Usage: python foreign_client.py HOST:PORT ADMIN_KEY

Checks that grpc.health.v1 answers SERVING, that reflection lists the huddle
services, and that requests built from the reflected descriptors work:
GetRoom without a key is UNAUTHENTICATED, GetRoom on an unknown id is
NOT_FOUND, CreateEntity returns an id. Prints
`foreign client: N passed, M failed` and exits non-zero if anything failed.
Needs: grpcio grpcio-reflection grpcio-health-checking protobuf.
"""

import sys
import traceback

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TIMEOUT = 10

passed = 0
failed = 0


def check(name, fn):
    """Runs one check; an exception or a false result is a failure."""
    global passed, failed
    try:
        result = fn()
        if result is False:
            raise AssertionError("check returned False")
        passed += 1
        print(f"ok   {name}")
    except Exception:  # noqa: BLE001 - report every failure the same way
        failed += 1
        print(f"FAIL {name}")
        traceback.print_exc(file=sys.stdout)


def expect_code(call, request, code, metadata=None):
    try:
        call(request, timeout=TIMEOUT, metadata=metadata)
    except grpc.RpcError as e:
        if e.code() != code:
            raise AssertionError(f"expected {code}, got {e.code()}: {e.details()}") from e
        return
    raise AssertionError(f"expected {code}, but the call succeeded")


def main():
    if len(sys.argv) != 3:
        print("usage: foreign_client.py HOST:PORT ADMIN_KEY", file=sys.stderr)
        return 2
    addr, key = sys.argv[1], sys.argv[2]
    auth = [("authorization", f"Bearer {key}")]

    channel = grpc.insecure_channel(addr)
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)

    def health():
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, resp

    check("health Check('') is SERVING", health)

    db = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(db)

    def services():
        names = set(db.get_services())
        for want in ("huddle.v1.Rooms", "huddle.v1.Entities", "grpc.health.v1.Health"):
            assert want in names, f"{want} not in {sorted(names)}"

    check("reflection lists huddle.v1.Rooms, huddle.v1.Entities, grpc.health.v1.Health", services)

    def method(service, name):
        """A callable for `service/name` and its request class, from reflection."""
        m = pool.FindServiceByName(service).FindMethodByName(name)
        req_cls = message_factory.GetMessageClass(m.input_type)
        resp_cls = message_factory.GetMessageClass(m.output_type)
        call = channel.unary_unary(
            f"/{service}/{name}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        return call, req_cls

    state = {}

    def resolve():
        state["get_room"] = method("huddle.v1.Rooms", "GetRoom")
        state["create_entity"] = method("huddle.v1.Entities", "CreateEntity")
        room_fields = {f.name for f in pool.FindMessageTypeByName("huddle.v1.Room").fields}
        assert {"id", "status", "participants", "event_seq"} <= room_fields, room_fields

    check("descriptors resolve: huddle.v1.Rooms/GetRoom, huddle.v1.Entities/CreateEntity", resolve)

    def get_room_without_key():
        call, req = state["get_room"]
        expect_code(call, req(id="no-such-room"), grpc.StatusCode.UNAUTHENTICATED)

    check("GetRoom without a key is UNAUTHENTICATED", get_room_without_key)

    def get_room_unknown():
        call, req = state["get_room"]
        expect_code(call, req(id="no-such-room"), grpc.StatusCode.NOT_FOUND, metadata=auth)

    check("GetRoom of an unknown id is NOT_FOUND", get_room_unknown)

    def create_entity():
        call, req = state["create_entity"]
        resp = call(req(name="Foreign Co", type="company"), timeout=TIMEOUT, metadata=auth)
        assert resp.id, f"no id in {resp}"
        assert resp.name == "Foreign Co", resp
        assert resp.active, resp

    check("CreateEntity with the admin key returns an id", create_entity)

    print(f"foreign client: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
