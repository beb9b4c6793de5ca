#!/usr/bin/env bash
# generate.sh OUTDIR — generate the Python protobuf and gRPC stubs of
# identity.v1 (and what they import) into OUTDIR, from the repository's
# proto/ with Debian's protoc and grpc_python_plugin. Run it before the
# client so the stubs never go stale; put OUTDIR on PYTHONPATH.
set -euo pipefail

out=${1:?usage: generate.sh OUTDIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# google/protobuf/*.proto ship with protoc (Debian: /usr/include).
protoc_include=${PROTOC_INCLUDE:-/usr/include}

for tool in protoc grpc_python_plugin; do
	command -v "$tool" >/dev/null || {
		echo "generate.sh: $tool not found (apt-get install protobuf-compiler protobuf-compiler-grpc)" >&2
		exit 1
	}
done
[ -f "$protoc_include/google/protobuf/timestamp.proto" ] || {
	echo "generate.sh: google/protobuf/timestamp.proto not under $protoc_include (set PROTOC_INCLUDE)" >&2
	exit 1
}

mkdir -p "$out"
protoc \
	-I "$root/proto" \
	-I "$root/third_party/googleapis" \
	-I "$here/proto" \
	-I "$protoc_include" \
	--python_out="$out" \
	--grpc_python_out="$out" \
	--plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" \
	identity/v1/identity.proto \
	identity/v1/errors.proto \
	google/api/annotations.proto \
	google/api/http.proto \
	rpc_status.proto
