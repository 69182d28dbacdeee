#!/usr/bin/env python3
"""Write the seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*.

    python3 fuzz/seeds.py            (from the repository root; rewrites the seed-* files only)

Seeds are small well-formed inputs, one per shape each target takes, plus a few hostile ones, so
that fuzzing starts from every branch rather than from nothing. Protobuf is encoded by hand (field
numbers from protos/dfs/v1/*.proto), so this needs only the Python standard library. Inputs the
fuzzers found (bug-*, and whatever fuzz/run --merge added) are kept beside them, never rewritten.
"""

import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

NODE = b"0123456789abcdef0123456789abcdef"
NODE2 = b"fedcba9876543210fedcba9876543210"
FILE_ID = b"00112233445566778899aabbccddeeff"
FRAG = FILE_ID + b"00000001"


def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(field, n):
    return varint(field << 3) + varint(n)


def f_bytes(field, b):
    return varint(field << 3 | 2) + varint(len(b)) + b


def f_fixed32(field, n):
    return varint(field << 3 | 5) + struct.pack("<I", n)


def f_fixed64(field, n):
    return varint(field << 3 | 1) + struct.pack("<Q", n)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# The order of `types` in fuzz/requests_fuzz.c.
REQUEST_TYPES = [
    "RegisterNode", "Heartbeat", "CreateFile", "ReplaceTarget", "CommitFile", "AbortFile",
    "GetFile", "ListFiles", "DeleteFile", "Stat", "ListNodes", "SetNodeState", "ReportFragments",
    "GetHealth", "PutFragment", "GetFragment", "DeleteFragment", "StatFragment", "RepairFragment",
    "ReportDamage", "StitchFile", "Rename", "SetAttributes", "GetAttributes",
    "GetReplicas", "AddReplica", "RemoveReplica",
]


def request_seeds():
    t = {name: i for i, name in enumerate(REQUEST_TYPES)}
    replication = f_varint(1, 1) + f_varint(2, 3) + f_varint(3, 4)
    erasure = f_varint(1, 2) + f_varint(4, 4) + f_varint(5, 2)
    commit_frag = lambda i: f_varint(1, i) + f_varint(2, 1000) + f_fixed32(3, 0xDEADBEEF) + \
        f_bytes(4, NODE) + f_bytes(4, NODE2) + f_bytes(5, bytes(range(32))) + f_bytes(5, bytes(32))
    # A put ticket for the next node and the forward ticket (op 6) of the hop to it (the MACs are
    # not real: the form is what the fuzzer runs).
    put_ticket = f_varint(1, 1) + f_bytes(2, FILE_ID) + f_bytes(3, FRAG) + f_bytes(4, NODE2) + \
        f_varint(5, 1700000000000) + f_bytes(6, bytes(32))
    hop_ticket = f_varint(1, 6) + f_bytes(2, FILE_ID) + f_bytes(3, FRAG) + f_bytes(4, NODE) + \
        f_varint(5, 1700000000000) + f_bytes(6, bytes(32)) + f_bytes(7, NODE2) + f_bytes(8, b"127.0.0.1:7101")
    header = f_bytes(1, FRAG) + f_varint(2, 5) + f_bytes(3, b"127.0.0.1:7101") + f_varint(4, 1 << 20) + \
        f_bytes(6, put_ticket) + f_bytes(7, hop_ticket)
    ec_source = f_varint(1, 0) + f_bytes(2, FILE_ID + b"00000000") + f_bytes(3, b"127.0.0.1:7102")
    seeds = {
        "register_node": ("RegisterNode", f_bytes(1, NODE) + f_bytes(2, b"127.0.0.1:7100") +
                          f_bytes(3, b"rack-1") + f_varint(4, 1 << 40) + f_varint(5, 1 << 20) +
                          f_varint(6, 1 << 39) + f_varint(7, 3)),
        "register_enroll": ("RegisterNode", f_bytes(1, NODE) + f_bytes(2, b"127.0.0.1:7100") +
                            f_bytes(8, b"0123456789abcdef") + f_bytes(9, bytes(range(32)))),
        "heartbeat": ("Heartbeat", f_varint(2, 1 << 40) + f_varint(5, 9) + f_fixed64(6, 0x1234567890abcdef)),
        "create_replicated": ("CreateFile", f_bytes(1, b"/a/b") + f_varint(2, 1000000) +
                              f_bytes(3, replication) + f_varint(4, 2) + f_varint(5, 1) + f_varint(6, 1)),
        "create_erasure": ("CreateFile", f_bytes(1, b"/ec/x") + f_varint(2, 1 << 30) + f_bytes(3, erasure)),
        "create_defaults": ("CreateFile", f_bytes(1, b"d/e") + f_varint(2, 1 << 62)),
        "create_dotdot": ("CreateFile", f_bytes(1, b"/a/../../etc/passwd") + f_varint(2, 1)),
        "create_nul": ("CreateFile", f_bytes(1, b"/a\x00/../b") + f_varint(2, 1)),
        "create_k1000": ("CreateFile", f_bytes(1, b"/k") + f_bytes(3, f_varint(2, 1000) + f_varint(3, 0))),
        "replace_target": ("ReplaceTarget", f_bytes(1, FILE_ID) + f_varint(2, 3) + f_bytes(3, NODE) +
                           f_varint(4, 1)),
        "commit": ("CommitFile", f_bytes(1, FILE_ID) + f_bytes(2, bytes(32)) +
                   f_bytes(3, commit_frag(0)) + f_bytes(3, commit_frag(1))),
        "abort": ("AbortFile", f_bytes(1, FILE_ID)),
        "stitch": ("StitchFile", f_bytes(1, b"/b/obj") + f_bytes(2, b"/.dfs-s3/uploads/b/u/part.00001") +
                   f_bytes(2, b"/.dfs-s3/uploads/b/u/part.00002") + f_bytes(3, bytes(range(16))) +
                   f_bytes(4, b":parts\x002\x00")),
        "stitch_self": ("StitchFile", f_bytes(1, b"/b/obj") + f_bytes(2, b"/b/obj")),
        "get_file": ("GetFile", f_bytes(1, b"/a/b")),
        "list_files": ("ListFiles", f_bytes(1, b"/d/") + f_varint(2, 10) + f_bytes(3, b"/d/x")),
        "delete_file": ("DeleteFile", f_bytes(1, b"/a/b")),
        "stat": ("Stat", b""),
        "list_nodes": ("ListNodes", b""),
        "get_replicas": ("GetReplicas", b""),
        "add_replica": ("AddReplica", f_varint(1, 4) + f_bytes(2, b"127.0.0.1:7001") + f_bytes(3, b"127.0.0.1:7000")),
        "add_replica_eq": ("AddReplica", f_varint(1, 4) + f_bytes(2, b"127.0.0.1:7001=a:1") + f_bytes(3, b"x")),
        "remove_replica": ("RemoveReplica", f_varint(1, 2)),
        "set_node_state": ("SetNodeState", f_bytes(1, b"0123") + f_varint(2, 4)),
        "report": ("ReportFragments", f_bytes(2, FRAG) + f_varint(3, 1) + f_bytes(4, FRAG) +
                   f_bytes(4, FILE_ID + b"00000002") + f_varint(5, 0) + f_varint(6, 1) +
                   f_fixed64(7, 0x1234567890abcdef)),
        "report_scrubbed": ("ReportFragments", f_fixed64(7, 0x1234567890abcdef) + f_bytes(8, FRAG) +
                            f_bytes(9, f_bytes(1, FRAG) + f_varint(2, 1 << 20) + f_fixed32(3, 0xDEADBEEF))),
        "report_damage": ("ReportDamage", f_bytes(1, f_bytes(1, f_varint(1, 2) + f_bytes(2, FILE_ID) +
                                                          f_bytes(3, FRAG) + f_bytes(4, NODE) +
                                                          f_varint(5, 1 << 41) + f_bytes(6, bytes(32))) +
                                                 f_varint(2, 1) + f_bytes(3, b"block 3 arrived corrupt"))),
        "health": ("GetHealth", f_varint(1, 1) + f_varint(2, 10)),
        "put_first": ("PutFragment", f_bytes(1, header) + f_bytes(2, b"hello") +
                      f_bytes(3, struct.pack("<I", crc32c(b"hello")))),
        "put_unpacked_crc": ("PutFragment", f_bytes(2, b"world") + f_fixed32(3, crc32c(b"world"))),
        "get_fragment": ("GetFragment", f_bytes(1, FRAG) + f_varint(2, 65536) + f_varint(3, 10)),
        "delete_fragment": ("DeleteFragment", f_bytes(1, FRAG)),
        "stat_fragment": ("StatFragment", f_bytes(1, FRAG)),
        "rename": ("Rename", f_bytes(1, b"/d/a") + f_bytes(2, b"/e/b") + f_varint(3, 1)),
        "rename_inside": ("Rename", f_bytes(1, b"/d") + f_bytes(2, b"/d/sub")),
        "set_attributes": ("SetAttributes", f_bytes(1, b"/d/a") + f_bytes(
            2, f_varint(1, 1) + f_varint(2, 1) + f_varint(3, 0o755) + f_varint(4, 1) + f_varint(5, 1000) +
            f_varint(6, 1000) + f_varint(7, 1) + f_varint(8, 1700000000000))),
        "set_attributes_remove": ("SetAttributes", f_bytes(1, b"/d/a") + f_varint(3, 1)),
        "get_attributes": ("GetAttributes", f_bytes(1, b"/") + f_varint(2, 1)),
        "repair_copy": ("RepairFragment", f_bytes(1, FRAG) + f_varint(2, 1 << 20) +
                        f_fixed32(3, 0x1234) + f_bytes(4, b"127.0.0.1:7101") + f_bytes(4, b"[::1]:7102")),
        "repair_rebuild": ("RepairFragment", f_bytes(1, FRAG) + f_varint(2, 1 << 20) + f_bytes(
            5, f_varint(1, 4) + f_varint(2, 2) + f_varint(3, 1 << 18) + f_varint(4, 5) + f_bytes(5, ec_source))),
    }
    return {name: bytes([t[kind]]) + body for name, (kind, body) in seeds.items()}


def frag_header(size, ident=FRAG, checksum=0xDEADBEEF, stored_ms=1700000000123):
    nblocks = (size + 65535) // 65536
    h = bytearray(128)
    h[0:8] = b"DFSFRAG1"
    struct.pack_into("<IIQIIq", h, 8, 1, 65536, size, nblocks, checksum, stored_ms)
    h[40:80] = ident
    struct.pack_into("<I", h, 124, crc32c(bytes(h[:124])))
    return bytes(h)


def frag_header_seeds():
    length = lambda size: struct.pack("<Q", 128 + size + 4 * ((size + 65535) // 65536))
    return {
        "empty": frag_header(0) + length(0),
        "one_block": frag_header(65536) + length(65536),
        "short_block": frag_header(100000) + length(100000),
        "largest": frag_header(0xFFFFFFFF * 65536) + struct.pack("<Q", 2 ** 64 - 1),
        "bad_magic": b"DFSFRAG2" + frag_header(10)[8:],
    }


def text_seeds():
    return {
        "paths_ids": {
            "path": b"/a/b", "relative": b"a//b", "dir": b"/dir/", "dotdot": b"/a/../b",
            "unicode": "/ünïcode/é".encode(), "overlong": b"/\xc0\xaf", "surrogate": b"/\xed\xa0\x80",
            "nul": b"/a\x00b", "control": b"/a\x01b", "long_name": b"/" + b"x" * 300,
            "node_id": NODE, "fragment_id": FRAG, "upper_id": NODE.upper(),
            "hostport": b"127.0.0.1:7000", "ipv6": b"[::1]:7000", "no_port": b"host:", "big_port": b"h:65536",
        },
        "units": {
            "size": b"\x00100M", "size_decimal": b"\x011.5GiB", "size_bytes": b"\x024096B",
            "rate_bits": b"\x03100Mbit", "rate_per_s": b"\x04500K/s", "rate_bitps": b"\x0564kbitps",
            "ec": b"\x204+2", "ec_wide": b"\x2031+1", "ec_wrap": b"\x204+4294967295", "ec_minus": b"\x204+-1",
            "huge": b"\x069999999999999999999T", "fraction": b"\x07.5",
        },
        "http": {
            "range": b"\x00" + struct.pack("<Q", 1000) + b"bytes=0-99",
            "suffix": b"\x00" + struct.pack("<Q", 1000) + b"bytes=-100",
            "open": b"\x00" + struct.pack("<Q", 1000) + b"bytes=900-",
            "huge": b"\x00" + struct.pack("<Q", 2 ** 64 - 1) + b"bytes=18446744073709551614-",
            "escapes": b"\x00" + struct.pack("<Q", 10) + b"/a%2Fb%20c%E2%82%AC",
            "bad_escape": b"\x00" + struct.pack("<Q", 10) + b"/a%zz%00",
            "params": b"\x1f" + struct.pack("<Q", 0) + b"3\x004\x00\x00min-copy\x00true",
            "params_ec": b"\x0c" + struct.pack("<Q", 0) + b"\x00\x004 2\x00buddy\x00no",
        },
    }


AWS_KEY = b"AKIAIOSFODNN7EXAMPLE"
EMPTY_SHA = b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def s3_request(method, target, headers, body=b""):
    head = method + b" " + target + b"\n" + b"".join(k + b": " + v + b"\n" for k, v in headers)
    return head + b"\n" + body


def aws_chunked_example():
    """The aws-chunked body of AWS's documented chunked PUT (64 KiB + 1 KiB of 'a')."""
    sigs = [b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            b"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            b"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
    return (b"10000;chunk-signature=" + sigs[0] + b"\r\n" + b"a" * 65536 + b"\r\n" +
            b"400;chunk-signature=" + sigs[1] + b"\r\n" + b"a" * 1024 + b"\r\n" +
            b"0;chunk-signature=" + sigs[2] + b"\r\n\r\n")


def s3_seeds():
    """First byte: 0 request, 1 request to sign, 2 XML, 3 aws-chunked body, 4 chunk description."""
    cred = b"Credential=" + AWS_KEY + b"/20130524/us-east-1/s3/aws4_request"
    get_example = s3_request(b"GET", b"/test.txt", [
        (b"Host", b"examplebucket.s3.amazonaws.com"), (b"Range", b"bytes=0-9"),
        (b"x-amz-content-sha256", EMPTY_SHA), (b"x-amz-date", b"20130524T000000Z"),
        (b"Authorization", b"AWS4-HMAC-SHA256 " + cred + b",SignedHeaders=host;range;x-amz-content-sha256;"
         b"x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")])
    put_example = s3_request(b"PUT", b"/test$file.text", [
        (b"Host", b"examplebucket.s3.amazonaws.com"), (b"Date", b"Fri, 24 May 2013 00:00:00 GMT"),
        (b"x-amz-date", b"20130524T000000Z"), (b"x-amz-storage-class", b"REDUCED_REDUNDANCY"),
        (b"x-amz-content-sha256", b"44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
        (b"Authorization", b"AWS4-HMAC-SHA256 " + cred + b",SignedHeaders=date;host;x-amz-content-sha256;"
         b"x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")],
        b"Welcome to Amazon S3.")
    presigned = s3_request(
        b"GET", b"/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2F"
        b"us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&"
        b"X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
        [(b"Host", b"examplebucket.s3.amazonaws.com")])
    streaming = s3_request(b"PUT", b"/examplebucket/chunkObject.txt", [
        (b"Host", b"s3.amazonaws.com"), (b"x-amz-date", b"20130524T000000Z"),
        (b"x-amz-storage-class", b"REDUCED_REDUNDANCY"),
        (b"x-amz-content-sha256", b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD"), (b"Content-Encoding", b"aws-chunked"),
        (b"x-amz-decoded-content-length", b"66560"), (b"Content-Length", b"66824"),
        (b"Authorization", b"AWS4-HMAC-SHA256 " + cred + b",SignedHeaders=content-encoding;content-length;host;"
         b"x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,"
         b"Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")], aws_chunked_example())
    plain = [
        s3_request(b"GET", b"/photos?list-type=2&prefix=a%2Fb&delimiter=%2F&max-keys=10&start-after=x&"
                   b"fetch-owner=true&encoding-type=url&continuation-token=t", [(b"Host", b"h")]),
        s3_request(b"GET", b"/k?uploads&max-uploads=3", [(b"Host", b"photos.s3.example.com:9000")]),
        s3_request(b"PUT", b"/photos/a%20b+c/%C3%A9?partNumber=3&uploadId=u1", [
            (b"Host", b"h"), (b"Content-Length", b"5"), (b"x-amz-meta-Color", b"blue"),
            (b"Content-Type", b"text/plain"), (b"Content-Encoding", b"aws-chunked,gzip")], b"hello"),
        s3_request(b"PUT", b"/dst/k", [(b"Host", b"h"), (b"x-amz-copy-source", b"/src/a%20b?versionId=null"),
                                       (b"x-amz-metadata-directive", b"REPLACE"),
                                       (b"x-amz-copy-source-if-match", b'"abc"')]),
        s3_request(b"GET", b"/b/k?response-content-type=text%2Fplain", [
            (b"Host", b"h"), (b"If-None-Match", b'W/"a", "b"'),
            (b"If-Modified-Since", b"Sunday, 06-Nov-94 08:49:37 GMT")]),
        s3_request(b"POST", b"/b?delete", [(b"Host", b"h")]),
        s3_request(b"PUT", b"/b/k?acl", [(b"Host", b"h"), (b"x-amz-acl", b"public-read")]),
        s3_request(b"GET", b"/b/k", [(b"Host", b"h"), (b"Authorization", b"AWS AKIA:sig")]),
        s3_request(b"PUT", b"/b/k", [(b"Host", b"h"), (b"x-amz-checksum-crc32", b"NhCmhg=="),
                                     (b"x-amz-sdk-checksum-algorithm", b"CRC32"), (b"Content-Length", b"5")],
                   b"hello"),
        s3_request(b"PUT", b"/b/k", [(b"Host", b"h"), (b"x-amz-trailer", b"x-amz-checksum-crc64nvme")], b"x"),
    ]
    seeds = {
        "aws_get": b"\x00" + get_example,
        "aws_put": b"\x00" + put_example,
        "aws_presigned": b"\x00" + presigned,
        "aws_streaming": b"\x00" + streaming,
        "sign_path": b"\x01\xff" + s3_request(b"GET", b"/b/%7e~+%2f/\xc3\xa9?a=1&a=0&b=%20&c", [
            (b"Host", b"h"), (b"X-Amz-Meta-A", b"  x   y "), (b"Range", b"bytes=0-1")]),
        "sign_dup": b"\x01\x05" + s3_request(b"PUT", b"/b/k?uploadId=u&partNumber=1", [
            (b"Host", b"h"), (b"x-amz-meta-a", b"1"), (b"X-Amz-Meta-A", b"2"), (b"Content-Type", b"a/b")]),
        "xml_complete": b"\x02" + b'<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload '
        b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>&quot;a&quot;</ETag><PartNumber>1'
        b"</PartNumber></Part><Part><PartNumber>2</PartNumber><ETag>b</ETag><ChecksumCRC32>x</ChecksumCRC32>"
        b"</Part></CompleteMultipartUpload>",
        "xml_delete": b"\x02" + b"<Delete><Quiet>true</Quiet><Object><Key>a &amp; b</Key></Object><Object><Key>"
        b"c</Key><VersionId>null</VersionId></Object></Delete>",
        "xml_bucket": b"\x02" + b"<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint>"
        b"</CreateBucketConfiguration>",
        "xml_bomb": b"\x02" + b'<!DOCTYPE l [<!ENTITY a "aa"><!ENTITY b "&a;&a;">]><l>&b;</l>',
        "xml_xxe": b"\x02" + b'<!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]><f>&x;</f>',
        "xml_misc": b"\x02" + b"\xef\xbb\xbf<?xml version='1.0'?><!-- c --><p:a xmlns:p='u' b='&lt;'>"
        b"<![CDATA[<x>]]>&#x263A;&#65;\r\n<b/><?pi x?></p:a>",
        "chunked_aws": b"\x03\x00\xff\xff" + aws_chunked_example(),
        "chunked_unsigned": b"\x03\x02\x00\x0f" + b"a\r\n0123456789\r\n5;ext\r\nabcde\r\n0\r\n"
        b"x-amz-checksum-crc32:AAAAAA==\r\nx-amz-checksum-sha256:x\r\n\r\n",
        "built_plain": b"\x04\x00\x03a\x10b\x05c",
        "built_trailer": b"\x04\x01\x00z",
        "names_token": b"\x05ZGlyL2EudHh0",
        "names_part": b"\x05part.00042.0123456789abcdef0123456789abcdef",
        "names_meta": b"\x05:parts\x003\x00content-type\x00image/png\x00x-amz-meta-a\x00b\x00",
    }
    for i, r in enumerate(plain):
        seeds["request_%d" % i] = b"\x00" + r
    return seeds


def write(target, seeds):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


def main():
    write("requests", request_seeds())
    write("frag_header", frag_header_seeds())
    for target, seeds in text_seeds().items():
        write(target, seeds)
    write("s3", s3_seeds())
    return 0


if __name__ == "__main__":
    sys.exit(main())
