#!/usr/bin/python3
"""A small gRPC client of identityd: login, verify, refresh, logout.

It walks one session through its life and prints one line per step, never a
token or a password. Any failure prints the gRPC code, the ErrorInfo reason
(identity.v1.ErrorReason) and the message to stderr and exits 1; bad usage
exits 2.

The stubs come from generate.sh; put its output directory on PYTHONPATH:

    ./generate.sh /tmp/identity-stubs
    PYTHONPATH=/tmp/identity-stubs IDENTITY_PASSWORD=... \
        /usr/bin/python3 identity_client.py --addr 127.0.0.1:9090 --username alice
"""

import argparse
import os
import sys

try:
    import grpc

    import rpc_status_pb2
    from identity.v1 import errors_pb2, identity_pb2, identity_pb2_grpc
except ImportError as e:  # pragma: no cover - environment problem
    print(f"identity_client: cannot import the gRPC stubs ({e}); "
          "run generate.sh OUTDIR and put OUTDIR on PYTHONPATH", file=sys.stderr)
    sys.exit(2)

TIMEOUT = 10.0  # seconds per call: nothing waits forever on the network
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


class Failure(Exception):
    """Something the service answered is wrong; exit 1."""


class StepFailed(Failure):
    """A call failed; str() names the step, code, reason and message."""

    def __init__(self, step, err):
        self.step = step
        self.code = err.code().name if hasattr(err, "code") else "UNKNOWN"
        self.reason = error_reason(err)
        self.message = err.details() if hasattr(err, "details") else str(err)
        super().__init__(f"{step} failed: {self.code} {self.reason or '(no ErrorInfo)'}: {self.message}")


def error_reason(err):
    """The google.rpc.ErrorInfo reason of a gRPC error, or ""."""
    trailers = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailers or ():
        if key != "grpc-status-details-bin":
            continue
        status = rpc_status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.type_url == ERROR_INFO_TYPE:
                return rpc_status_pb2.ErrorInfo.FromString(detail.value).reason
    return ""


def call(step, method, request, metadata=None):
    try:
        return method(request, timeout=TIMEOUT, metadata=metadata)
    except grpc.RpcError as err:
        raise StepFailed(step, err) from None


def describe(identity):
    return (f"subject={identity.subject} username={identity.username} "
            f"roles={','.join(identity.roles) or '-'} session_id={identity.session_id}")


def run(stub, username, password):
    pair = call("login", stub.Login, identity_pb2.LoginRequest(username=username, password=password))
    if pair.token_type != "Bearer" or not pair.access_token or not pair.refresh_token:
        raise Failure("login returned an incomplete TokenPair")
    print(f"login ok: session_id={pair.session_id} token_type={pair.token_type} expires_in={pair.expires_in}")

    identity = call("verify", stub.Verify, identity_pb2.VerifyRequest(token=pair.access_token))
    if identity.session_id != pair.session_id or identity.username == "":
        raise Failure("verify answered for another session")
    print(f"verify ok: {describe(identity)}")

    me = call("whoami", stub.WhoAmI, identity_pb2.WhoAmIRequest(),
              metadata=[("authorization", "Bearer " + pair.access_token)])
    print(f"whoami ok: {describe(me)}")

    new = call("refresh", stub.Refresh, identity_pb2.RefreshRequest(refresh_token=pair.refresh_token))
    if new.refresh_token == pair.refresh_token:
        raise Failure("refresh did not rotate the refresh token")
    print(f"refresh ok: rotated session_id={new.session_id} expires_in={new.expires_in}")

    identity = call("verify refreshed", stub.Verify, identity_pb2.VerifyRequest(token=new.access_token))
    print(f"verify refreshed ok: {describe(identity)}")

    call("logout", stub.Logout, identity_pb2.LogoutRequest(refresh_token=new.refresh_token))
    print(f"logout ok: session_id={new.session_id}")

    try:
        call("verify after logout", stub.Verify, identity_pb2.VerifyRequest(token=new.access_token))
    except StepFailed as f:
        if f.reason != errors_pb2.ErrorReason.Name(errors_pb2.TOKEN_REVOKED):
            raise
        print(f"verify after logout ok: rejected {f.code} {f.reason}")
    else:
        raise Failure("the access token still verifies after logout")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", default=os.environ.get("IDENTITY_GRPC_ADDR", "127.0.0.1:9090"),
                   help="identityd gRPC address (env IDENTITY_GRPC_ADDR)")
    p.add_argument("--username", default=os.environ.get("IDENTITY_USERNAME"),
                   help="user to log in as (env IDENTITY_USERNAME)")
    p.add_argument("--password", default=os.environ.get("IDENTITY_PASSWORD"),
                   help="password; prefer env IDENTITY_PASSWORD, argv is visible to other users")
    args = p.parse_args(argv)
    if not args.username or not args.password:
        p.error("username and password are required (flags or IDENTITY_USERNAME / IDENTITY_PASSWORD)")

    with grpc.insecure_channel(args.addr) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        try:
            run(stub, args.username, args.password)
        except Failure as f:
            print(f"identity_client: {f}", file=sys.stderr)
            return 1
    print("all steps ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
