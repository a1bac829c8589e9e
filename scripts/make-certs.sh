#!/usr/bin/env bash
# Certificates for cnm's mutual TLS (README, "Security model"):
#
#   scripts/make-certs.sh DIR [SAN ...]
#   scripts/make-certs.sh --name NAME DIR [SAN ...]
#
# DIR/ca.pem, ca-key.pem         a CA (reused when DIR already has one, so the
#                                same CA can sign the certificates of more hosts)
# DIR/server.pem, server-key.pem for the services' --tls-cert/--tls-key; valid for
#                                localhost, 127.0.0.1, ::1, this hostname and each
#                                SAN given (an IP address or a DNS name). It may
#                                also act as a client, so a controller can show
#                                its own certificate to IPAM and the drivers.
# DIR/client.pem, client-key.pem for cnmctl (--tls-cert/--tls-key or CNM_TLS_CERT/
#                                CNM_TLS_KEY) and the Client library
# With --name: DIR/NAME.pem, NAME-key.pem only, a server certificate (also a
# client one) for one more host, signed by DIR's CA.
#
# Every service and client is given DIR/ca.pem as --tls-ca. Keys are 0600.
# CNM_CERT_DAYS (default 825) sets how long the certificates are valid.
set -euo pipefail

if (($# < 1)) || [[ $1 == -h || $1 == --help ]]; then
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit $((($# < 1) ? 2 : 0))
fi
name=""
if [[ $1 == --name ]]; then
    (($# >= 3)) || { echo "make-certs: usage: make-certs.sh --name NAME DIR [SAN ...]" >&2; exit 2; }
    name=$2
    [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ && $name != ca && $name != ca-key ]] ||
        { echo "make-certs: --name $name: use letters, digits, . _ -" >&2; exit 2; }
    shift 2
fi
dir=$1
shift
days=${CNM_CERT_DAYS:-825}
command -v openssl >/dev/null || { echo "make-certs: openssl is not installed" >&2; exit 1; }

umask 077
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sans="DNS:localhost,IP:127.0.0.1,IP:::1"
[[ -n $name ]] || sans+=",DNS:$(hostname)" # another host's certificate names that host
for san in "$@"; do
    if [[ $san =~ ^[0-9.]+$ || $san == *:* ]]; then
        sans+=",IP:$san"
    elif [[ $san =~ ^[A-Za-z0-9.-]+$ ]]; then
        sans+=",DNS:$san"
    else
        echo "make-certs: $san: expected an IP address or a DNS name" >&2
        exit 2
    fi
done

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2>/dev/null; }

if [[ ! -f $dir/ca.pem || ! -f $dir/ca-key.pem ]]; then
    newkey "$dir/ca-key.pem"
    openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days "$days" -subj "/CN=cnm CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$dir/ca.pem"
fi

# sign NAME CN EXTENSIONS
sign() {
    newkey "$dir/$1-key.pem"
    openssl req -new -key "$dir/$1-key.pem" -subj "/CN=$2" -out "$work/$1.csr"
    printf '%s\n' "$3" >"$work/$1.ext"
    openssl x509 -req -in "$work/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
        -CAcreateserial -CAserial "$work/ca.srl" -sha256 -days "$days" \
        -extfile "$work/$1.ext" -out "$dir/$1.pem" 2>/dev/null
}

server_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$sans"
if [[ -n $name ]]; then
    sign "$name" "$name" "$server_ext"
    chmod 0644 "$dir/ca.pem" "$dir/$name.pem"
    echo "make-certs: $dir/$name.pem and $name-key.pem, signed by $dir/ca.pem"
    exit 0
fi
sign server "cnm server" "$server_ext"
sign client "cnm client" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"

chmod 0644 "$dir/ca.pem" "$dir/server.pem" "$dir/client.pem"
echo "make-certs: CA, server and client certificates in $dir"
