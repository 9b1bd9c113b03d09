#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<name>/).

The wire corpus comes from fuzz_seed_wire (seed_wire.cc), which encodes one
header of every message kind with the real encoder:
    tests/fuzz/make_corpus.py build/bin/fuzz_seed_wire
"""
import gzip
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(name, file, data):
    d = os.path.join(HERE, "corpus", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, file), "wb") as f:
        f.write(data)


def idx(images, labels, flags):
    if flags & 1:
        images = gzip.compress(images, mtime=0)
    if flags & 2:
        labels = gzip.compress(labels, mtime=0)
    return bytes([flags]) + struct.pack("<I", len(images)) + images + labels


def main():
    # IDX: 3 images of 2x2 and their labels; plain, gzip, and a wrong magic.
    images = struct.pack(">IIII", 0x803, 3, 2, 2) + bytes(range(12))
    labels = struct.pack(">II", 0x801, 3) + bytes([0, 1, 2])
    put("idx", "plain", idx(images, labels, 0))
    put("idx", "gzip", idx(images, labels, 3))
    put("idx", "wrong-magic", idx(struct.pack(">IIII", 0x802, 3, 2, 2), labels, 0))
    # Row ids: a count/table byte, then delta + varint rows.
    put("row_ids", "three", bytes([3, 5, 1, 0x81, 0x01]))
    put("row_ids", "big-table", bytes([0x42, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x01]))
    put("row_ids", "empty", bytes([0]))
    # Sparse payloads: layout, block count, per block (table, rows - 1, id
    # bytes as u16), then the frame.
    put("sparse_payload", "push", bytes([0, 1, 0, 1, 2, 0]) + struct.pack("<2f", 1, 2) +
        bytes([3, 4, 0, 0]) + struct.pack("<8f", *range(8)))
    put("sparse_payload", "pull", bytes([1, 1, 1, 0, 1, 0, 9, 0, 0, 0]))
    put("sparse_payload", "pull_reply", bytes([2, 1, 2, 2, 0, 0]) + struct.pack("<2f", 1, 2) +
        struct.pack("<3f", 4, 5, 6))
    # Criteo click logs: two good lines; a bad one, an empty one and a good
    # one without its newline.
    line = "1\t" + "\t".join(["5"] * 13) + "\t" + "\t".join(["68fd1e64"] * 26)
    bad = "0\t" + "\t".join([""] * 13) + "\t" + "\t".join(["zz"] * 26)
    put("criteo", "two-lines", (line + "\n" + line.replace("1\t", "0\t", 1) + "\n").encode())
    put("criteo", "bad-and-good", (bad + "\n\n" + line).encode())
    # CSV: label last, with and without a header line.
    put("csv", "header", bytes([0xFF, 1]) + b"x1,x2,y\n1.5,2,0\n-3,4e2,1\n")
    put("csv", "plain", bytes([0, 0]) + b"0,1.0,2.0\r\n1,3.0,4.0\n")
    # Config: every shipped one, and one with an override.
    configs = os.path.join(ROOT, "configs")
    for f in sorted(os.listdir(configs)):
        if f.endswith(".yaml"):
            with open(os.path.join(configs, f), "rb") as c:
                put("config", f, c.read())
    with open(os.path.join(configs, "fashion_mnist_mlp.yaml"), "rb") as c:
        put("config", "override", c.read() + b"\n--set cluster.consistency=ssp")
    # Keys: a key pair file and a cluster key file (Z85 from the ZeroMQ RFC 32 examples).
    pub, sec = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7", "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
    put("keys", "member", b"# worker-0\npublic-key = " + pub.encode() + b"\nsecret-key = " + sec.encode() + b"\n")
    put("keys", "cluster", b"# the cluster\ncoordinator " + pub.encode() + b"\nserver-0 Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID\n")
    # Checkpoint: header of a 4-key range at step 5 with Adam's 8 state
    # values, one worker's position and one epoch's audit; checksums fixed.
    fields = struct.pack("<8q", 1, 5, 0, 4, 5, 4, 8, 1)
    part = lambda b: struct.pack("<H", len(b)) + b
    weights = struct.pack("<4f", 0.5, -1, 2, 0)
    state = struct.pack("<8f", *range(8))
    positions = struct.pack("<IQq", 0, 7, 12) + struct.pack("<qqQQ", 1, 64, 100, 1000)
    put("checkpoint", "valid", bytes([0x0F]) + fields + part(weights) + part(state) + part(positions))
    put("checkpoint", "two-chunks", bytes([0x1F]) + fields + part(weights[:8]) + part(weights[8:]) + part(state) +
        part(positions))
    put("checkpoint", "bad-crc", bytes([0x00]) + fields + part(weights) + part(state) + part(positions))
    # Job store records.
    put("job_store", "generation", b"\x00" + b'{"epoch":2,"done":[1,5],"partial":[[3,40]],"owner":[[3,1]]}')
    put("job_store", "grant", b"\x01" + b"1 4294967301 64")
    put("job_store", "commit", b"\x02" + b"3")
    put("job_store", "evaluation", b"\x03" + b'{"epoch":1,"step":469,"metric":0.85,"time_s":1.5}')
    # Wire: one header of every kind, from the encoder.
    if len(sys.argv) > 1:
        subprocess.run([sys.argv[1], os.path.join(HERE, "corpus", "wire")], check=True)


if __name__ == "__main__":
    main()
