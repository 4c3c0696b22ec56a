#!/usr/bin/env bash
# A development CA and, signed by it, one certificate per name (default: silo1 silo2 silo3 client), for TauCluster's
# mutual TLS: Tau:Tls on the silos, --tls-cert/--tls-key/--tls-ca (or TAU_TLS_*) on tau and other clients.
# Every certificate allows server and client authentication, since a silo is both. Not for production: the CA's key
# lies beside the certificates; a real deployment's CA keeps its key elsewhere and issues from there.
#
#   docker/make-dev-certs.sh docker/certs            # ca.crt, ca.key, silo1..3 and client .crt/.key
#   docker/make-dev-certs.sh docker/certs alice      # one more client, from the same CA
set -euo pipefail
out=${1:?usage: make-dev-certs.sh OUT_DIR [NAME ...]}
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(silo1 silo2 silo3 client)
days=${DAYS:-825}
command -v openssl >/dev/null || { echo "make-dev-certs.sh: openssl is required (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
umask 077

if [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days "$days" \
    -keyout "$out/ca.key" -out "$out/ca.crt" -subj "/CN=TauCluster development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
for name in "${names[@]}"; do
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9.-]*$ ]] || { echo "make-dev-certs.sh: '$name' is not a host name" >&2; exit 1; }
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -keyout "$out/$name.key" -out "$out/$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -sha256 -days "$days" -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
    -out "$out/$name.crt" -extfile <(printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1") 2>/dev/null
  rm -f "$out/$name.csr"
done
chmod 644 "$out"/*.crt
echo "wrote $out: ca.crt and ${names[*]} (.crt/.key)"
