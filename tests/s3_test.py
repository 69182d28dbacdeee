"""End to end: dfs-gateway's S3 API (--s3-listen) over a real cluster, driven by real S3 clients.

The clients are Debian's python3-boto3 and s3cmd, used as their users use them, with access keys from
`dfs token create --s3` (the metadata service runs with --s3-key-file). Also: a presigned URL fetched
with curl; a wrong secret, an expired URL, a skewed clock and anonymous requests refused; a read-only
key that may read but not write; aws-chunked bodies (what boto3 sends over TLS, replayed here over
plain HTTP: SigV4 does not sign the scheme) accepted, and one with a bad chunk signature refused with
nothing left visible.

Everything runs under Debian's /usr/bin/python3 (re-executed when another interpreter started it).
"""

import os
import sys

_DEBIAN_PYTHON = "/usr/bin/python3"
if (os.path.realpath(sys.executable) != os.path.realpath(_DEBIAN_PYTHON) and os.access(_DEBIAN_PYTHON, os.X_OK)
        and not os.environ.get("DFS_S3_CLIENTS_REEXEC")):
    os.environ["DFS_S3_CLIENTS_REEXEC"] = "1"
    sys.stdout.flush()
    os.execv(_DEBIAN_PYTHON, [_DEBIAN_PYTHON] + sys.argv)

import base64  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import http.client  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import unittest.mock  # noqa: E402
import urllib.parse  # noqa: E402

import boto3  # noqa: E402
import boto3.s3.transfer  # noqa: E402
import botocore.auth  # noqa: E402
import botocore.exceptions  # noqa: E402
from botocore.config import Config  # noqa: E402

import harness  # noqa: E402

HERE = os.path.dirname(os.path.realpath(__file__))
# Sanitizers inflate memory (ASan's quarantine): the memory bound is checked only without them.
SANITIZED = os.environ.get("DFS_SANITIZED") == "1"
REGION = "us-east-1"
# One PUT whatever the size (boto3 goes multipart from 8 MiB by default).
SINGLE_PUT = boto3.s3.transfer.TransferConfig(multipart_threshold=1 << 40, use_threads=False)


def gateway_binary():
    for base in harness._runfiles_dirs():
        p = os.path.join(base, "gateway", "dfs-gateway")
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    bin_dir = os.environ.get("DFS_BIN_DIR") or os.path.join(os.path.dirname(HERE), "bazel-bin")
    p = os.path.join(bin_dir, "gateway", "dfs-gateway")
    if os.path.isfile(p):
        return p
    raise AssertionError("dfs-gateway not found: add //gateway:dfs-gateway to the test's data")


class Gateway:
    """dfs-gateway with --s3-listen, stopped by pid with SIGTERM (exit 0 checked)."""

    def __init__(self, metadata, token_file, workdir, *flags):
        os.makedirs(workdir, exist_ok=True)
        spool = self.spool = os.path.join(workdir, "spool")
        os.makedirs(spool, exist_ok=True)
        ready = os.path.join(workdir, "ready")
        s3ready = os.path.join(workdir, "s3ready")
        self.log_path = os.path.join(workdir, "gateway.log")
        self.log = open(self.log_path, "w")
        cmd = [gateway_binary(), "--metadata", metadata, "--token-file", token_file, "--listen", "127.0.0.1:0",
               "--s3-listen", "127.0.0.1:0", "--s3-ready-file", s3ready, "--s3-domain", "s3.dfs.test", "--spool-dir", spool,
               "--ready-file", ready, "--grace-ms", "2000"] + list(flags)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not (os.path.exists(ready) and os.path.exists(s3ready)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("dfs-gateway did not start:\n" + self.tail())
            time.sleep(0.02)
        with open(s3ready) as f:
            self.s3_address = f.read().strip()
        self.port = int(self.s3_address.rsplit(":", 1)[1])
        self.endpoint = "http://" + self.s3_address

    def tail(self, n=40):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def stop(self):
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append("dfs-gateway did not stop within 30 s of SIGTERM")
        self.log.close()
        if self.proc.returncode != 0:
            problems.append("dfs-gateway exited with %s" % self.proc.returncode)
        with open(self.log_path, errors="replace") as f:
            for line in f:
                if any(p in line for p in harness.SANITIZER_PATTERNS):
                    problems.append("sanitizer: " + line.strip())
        return problems


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def md5(b):
    return hashlib.md5(b).hexdigest()


class MetricsCluster(harness.Cluster):
    """Storage nodes that also serve metrics: the bytes they received tell whether a Complete copied any."""

    def _storage_cmd(self, i, metadata_addr, zones, extra=()):
        return super()._storage_cmd(i, metadata_addr, zones, extra) + ["--metrics-listen", "127.0.0.1:0"]

    def received_bytes(self):
        """dfs_storage_data_received_bytes_total summed over the storage nodes."""
        import re
        import urllib.request
        total = 0
        for rec in self.status():
            if rec["name"] == "metadata":
                continue
            with open(rec["log"], encoding="utf-8", errors="replace") as f:
                found = re.findall(r'msg="(?:serving|listening)".* metrics=(\S+)', f.read())
            with urllib.request.urlopen("http://%s/metrics" % found[-1], timeout=10) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith("dfs_storage_data_received_bytes_total"):
                        total += int(float(line.split()[-1]))
        return total


class S3(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = harness.tmpdir("s3-")
        cls.c = MetricsCluster(nodes=3, metadata_flags=["--s3-key-file", os.path.join(cls.dir, "s3.key")])
        cls.c.start()
        try:
            # The gateway runs with a token of the gateway role: files, buckets, signing keys.
            _, out, _ = harness.dfs("token", "create", "--role", "gateway", "--name", "s3-gateway", cluster=cls.c)
            cls.gw_token_file = os.path.join(cls.dir, "gateway.token")
            with open(os.open(cls.gw_token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(out.strip() + "\n")
            cls.gw = Gateway(cls.c.address, cls.gw_token_file, os.path.join(cls.dir, "gateway"))
            cls.key_id, cls.secret = cls.make_key("read_write")
        except BaseException:
            cls.c.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        problems = cls.gw.stop() + cls.c.stop()
        if problems:
            raise AssertionError("\n".join(problems))

    @classmethod
    def make_key(cls, role):
        _, out, _ = harness.dfs("token", "create", "--role", role, "--s3", "--name", "s3-" + role, cluster=cls.c)
        token, key_id, secret = out.split()
        assert key_id.startswith("DFS") and len(key_id) == 19, out
        assert len(secret) == 40, out
        return key_id, secret

    def client(self, key_id=None, secret=None, endpoint=None, **s3):
        s3.setdefault("addressing_style", "path")
        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint or self.gw.endpoint, aws_access_key_id=key_id or self.key_id,
            aws_secret_access_key=secret or self.secret, region_name=REGION,
            config=Config(signature_version="s3v4", s3=s3, retries={"max_attempts": 1}))

    def code(self, fn, *args, **kw):
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            fn(*args, **kw)
        return cm.exception.response["Error"]["Code"]

    def test_boto3(self):
        s3 = self.client()
        s3.create_bucket(Bucket="boto-1")
        self.assertEqual(self.code(s3.create_bucket, Bucket="boto-1"), "BucketAlreadyOwnedByYou")
        self.assertIn("boto-1", [b["Name"] for b in s3.list_buckets()["Buckets"]])
        s3.head_bucket(Bucket="boto-1")
        self.assertEqual(self.code(s3.head_bucket, Bucket="no-such-1"), "404")
        self.assertEqual(self.code(s3.put_object, Bucket="no-such-1", Key="k", Body=b"x"), "NoSuchBucket")
        self.assertIsNone(s3.get_bucket_location(Bucket="boto-1").get("LocationConstraint"))

        big = os.urandom(20 << 20)
        path = self.tmp("big")
        with open(path, "wb") as f:
            f.write(big)
        s3.upload_file(path, "boto-1", "dir/big.bin", Config=SINGLE_PUT)
        small = {"a/1.txt": b"one", "a/2.txt": b"two", "a/b/3.txt": b"three", "top.txt": b"top", "z.txt": b""}
        for k, v in small.items():
            r = s3.put_object(Bucket="boto-1", Key=k, Body=v)
            self.assertEqual(r["ETag"], '"%s"' % md5(v))
        s3.download_file("boto-1", "dir/big.bin", self.tmp("big.out"))
        with open(self.tmp("big.out"), "rb") as f:
            self.assertEqual(f.read(), big)
        self.assertEqual(s3.get_object(Bucket="boto-1", Key="a/b/3.txt")["Body"].read(), b"three")
        self.assertEqual(s3.get_object(Bucket="boto-1", Key="z.txt")["Body"].read(), b"")
        r = s3.get_object(Bucket="boto-1", Key="dir/big.bin", Range="bytes=1000-1999999")
        self.assertEqual(r["ContentRange"], "bytes 1000-1999999/%d" % len(big))
        self.assertEqual(r["Body"].read(), big[1000:2000000])
        self.assertEqual(s3.get_object(Bucket="boto-1", Key="top.txt", Range="bytes=-2")["Body"].read(), b"op")
        self.assertEqual(self.code(s3.get_object, Bucket="boto-1", Key="top.txt", Range="bytes=10-"),
                         "InvalidRange")
        self.assertEqual(self.code(s3.get_object, Bucket="boto-1", Key="nope"), "NoSuchKey")

        # Listings: with and without a delimiter, v1 and v2, a page at a time.
        r = s3.list_objects_v2(Bucket="boto-1")
        self.assertEqual([o["Key"] for o in r["Contents"]], sorted(list(small) + ["dir/big.bin"]))
        r = s3.list_objects_v2(Bucket="boto-1", Delimiter="/")
        self.assertEqual([o["Key"] for o in r["Contents"]], ["top.txt", "z.txt"])
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["a/", "dir/"])
        r = s3.list_objects_v2(Bucket="boto-1", Prefix="a/", Delimiter="/")
        self.assertEqual([o["Key"] for o in r["Contents"]], ["a/1.txt", "a/2.txt"])
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["a/b/"])
        r = s3.list_objects(Bucket="boto-1", Prefix="a/")
        self.assertEqual([o["Key"] for o in r["Contents"]], ["a/1.txt", "a/2.txt", "a/b/3.txt"])
        keys = []
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="boto-1", PaginationConfig={"PageSize": 2})
        for page in pages:
            self.assertLessEqual(page["KeyCount"], 2)
            keys += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        self.assertEqual(keys, sorted(list(small) + ["dir/big.bin"]))
        keys = []
        for page in s3.get_paginator("list_objects").paginate(Bucket="boto-1", Delimiter="/",
                                                              PaginationConfig={"PageSize": 1}):
            keys += [o["Key"] for o in page.get("Contents", [])] + [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        self.assertEqual(keys, ["a/", "dir/", "top.txt", "z.txt"])
        r = s3.list_objects_v2(Bucket="boto-1", StartAfter="a/b/3.txt")
        self.assertEqual(r["Contents"][0]["Key"], "dir/big.bin")

        # ETags are MD5s, in listings too; headers and x-amz-meta-* are kept and returned.
        r = s3.list_objects_v2(Bucket="boto-1", Prefix="a/")
        self.assertEqual([o["ETag"] for o in r["Contents"]], ['"%s"' % md5(small[o["Key"]]) for o in r["Contents"]])
        s3.put_object(Bucket="boto-1", Key="meta.png", Body=b"png", ContentType="image/png",
                      Metadata={"color": "blue", "Mixed-Case": "x y"}, CacheControl="max-age=60",
                      ContentDisposition='attachment; filename="f.png"')
        head = s3.head_object(Bucket="boto-1", Key="meta.png")
        self.assertEqual(head["ContentType"], "image/png")
        self.assertEqual(head["Metadata"], {"color": "blue", "mixed-case": "x y"})
        self.assertEqual(head["CacheControl"], "max-age=60")
        self.assertEqual(head["ContentDisposition"], 'attachment; filename="f.png"')
        self.assertEqual(head["ETag"], '"%s"' % md5(b"png"))
        r = s3.get_object(Bucket="boto-1", Key="meta.png", ResponseContentType="text/plain")
        self.assertEqual((r["ContentType"], r["Metadata"]["color"]), ("text/plain", "blue"))
        s3.copy_object(Bucket="boto-1", Key="meta-copy.png", CopySource={"Bucket": "boto-1", "Key": "meta.png"})
        head = s3.head_object(Bucket="boto-1", Key="meta-copy.png")
        self.assertEqual((head["ContentType"], head["Metadata"], head["ETag"]),
                         ("image/png", {"color": "blue", "mixed-case": "x y"}, '"%s"' % md5(b"png")))
        s3.copy_object(Bucket="boto-1", Key="meta-copy.png", CopySource={"Bucket": "boto-1", "Key": "meta.png"},
                       MetadataDirective="REPLACE", ContentType="text/x-new", Metadata={"k": "v"})
        head = s3.head_object(Bucket="boto-1", Key="meta-copy.png")
        self.assertEqual((head["ContentType"], head["Metadata"]), ("text/x-new", {"k": "v"}))
        for k in ("meta.png", "meta-copy.png"):
            s3.delete_object(Bucket="boto-1", Key=k)

        # Conditions.
        head = s3.head_object(Bucket="boto-1", Key="top.txt")
        self.assertEqual(head["ContentLength"], 3)
        etag = head["ETag"]
        self.assertEqual(etag, '"%s"' % md5(b"top"))
        self.assertEqual(self.code(s3.get_object, Bucket="boto-1", Key="top.txt", IfNoneMatch=etag), "304")
        self.assertEqual(self.code(s3.get_object, Bucket="boto-1", Key="top.txt", IfMatch='"0000"'),
                         "PreconditionFailed")
        self.assertEqual(s3.get_object(Bucket="boto-1", Key="top.txt", IfMatch=etag)["Body"].read(), b"top")

        # Conditional writes (If-None-Match: *, If-Match), checked again in the commit's transaction.
        def put_with(headers, key, body):
            c = self.client()

            def add(request, **_):
                for k, v in headers.items():
                    request.headers[k] = v
            c.meta.events.register("before-sign.s3.PutObject", add)
            return c.put_object(Bucket="boto-1", Key=key, Body=body)
        self.assertEqual(self.code(put_with, {"If-None-Match": "*"}, "top.txt", b"new"), "PreconditionFailed")
        put_with({"If-None-Match": "*"}, "fresh.txt", b"fresh")
        self.assertEqual(self.code(put_with, {"If-Match": '"%s"' % md5(b"nope")}, "fresh.txt", b"x"),
                         "PreconditionFailed")
        put_with({"If-Match": '"%s"' % md5(b"fresh")}, "fresh.txt", b"fresher")
        self.assertEqual(s3.get_object(Bucket="boto-1", Key="fresh.txt")["Body"].read(), b"fresher")
        s3.delete_object(Bucket="boto-1", Key="fresh.txt")

        # Copy, batch delete, and a bucket that must be empty to go.
        s3.copy_object(Bucket="boto-1", Key="copy/top.txt", CopySource={"Bucket": "boto-1", "Key": "top.txt"})
        self.assertEqual(s3.get_object(Bucket="boto-1", Key="copy/top.txt")["Body"].read(), b"top")
        self.assertEqual(self.code(s3.delete_bucket, Bucket="boto-1"), "BucketNotEmpty")
        everything = [o["Key"] for o in s3.list_objects_v2(Bucket="boto-1")["Contents"]]
        r = s3.delete_objects(Bucket="boto-1", Delete={"Objects": [{"Key": k} for k in everything]})
        self.assertEqual(sorted(d["Key"] for d in r["Deleted"]), sorted(everything))
        self.assertEqual(s3.list_objects_v2(Bucket="boto-1")["KeyCount"], 0)
        s3.delete_object(Bucket="boto-1", Key="already-gone")
        s3.delete_bucket(Bucket="boto-1")
        self.assertNotIn("boto-1", [b["Name"] for b in s3.list_buckets()["Buckets"]])

    def test_multipart(self):
        """boto3's multipart upload of 70 MiB (9 parts), s3cmd's of 66 MiB (test_s3cmd); ListParts, ListMultipartUploads,
        a part uploaded again, InvalidPart, EntityTooSmall, NoSuchUpload, Abort."""
        s3 = self.client()
        s3.create_bucket(Bucket="multi-1")
        data = os.urandom(70 << 20)
        path = self.tmp("big")
        with open(path, "wb") as f:
            f.write(data)
        received = self.c.received_bytes()
        s3.upload_file(path, "multi-1", "big/70m.bin",
                       Config=boto3.s3.transfer.TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4))
        # The parts' bytes reached the nodes once (k copies of each), Complete sent none again: at
        # most 3 copies of 70 MiB and the upload's record, where re-putting the parts sent twice that.
        sent = self.c.received_bytes() - received
        self.assertGreaterEqual(sent, len(data))
        self.assertLess(sent, 3 * len(data) + (1 << 20))
        s3.download_file("multi-1", "big/70m.bin", self.tmp("big.out"))
        with open(self.tmp("big.out"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(data).digest())
        # Ranges of the stitched object: across the boundary of parts 1 and 2, inside part 5, the
        # last part, one byte at a boundary.
        for lo, hi in (((8 << 20) - 100, (8 << 20) + 100), ((33 << 20) + 7, (36 << 20) - 1),
                       ((64 << 20) + 3, (70 << 20) - 1), (16 << 20, 16 << 20)):
            got = s3.get_object(Bucket="multi-1", Key="big/70m.bin", Range="bytes=%d-%d" % (lo, hi))["Body"].read()
            self.assertEqual(got, data[lo:hi + 1], (lo, hi))
        # `dfs get` of the object checks every segment's SHA-256 and the object's over them.
        harness.dfs("get", "/multi-1/big/70m.bin", self.tmp("big.cli"), cluster=self.c)
        with open(self.tmp("big.cli"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(data).digest())
        # The parts left the namespace: nothing of the upload is listed under its folder.
        _, out, _ = harness.dfs("ls", "/.dfs-s3/uploads/multi-1/", cluster=self.c)
        self.assertNotIn("part.", out)
        self.assertEqual(s3.list_multipart_uploads(Bucket="multi-1").get("Uploads", []), [])

        # By hand: parts as S3 defines them.
        up = s3.create_multipart_upload(Bucket="multi-1", Key="hand.bin")["UploadId"]
        ups = s3.list_multipart_uploads(Bucket="multi-1")["Uploads"]
        self.assertEqual([(u["Key"], u["UploadId"]) for u in ups], [("hand.bin", up)])
        p1, p2 = data[:5 << 20], data[5 << 20:(5 << 20) + 1000]
        e1 = s3.upload_part(Bucket="multi-1", Key="hand.bin", UploadId=up, PartNumber=1, Body=b"first try")["ETag"]
        self.assertEqual(e1, '"%s"' % md5(b"first try"))
        e1 = s3.upload_part(Bucket="multi-1", Key="hand.bin", UploadId=up, PartNumber=1, Body=p1)["ETag"]
        e2 = s3.upload_part(Bucket="multi-1", Key="hand.bin", UploadId=up, PartNumber=2, Body=p2)["ETag"]
        parts = s3.list_parts(Bucket="multi-1", Key="hand.bin", UploadId=up)["Parts"]
        self.assertEqual([(p["PartNumber"], p["ETag"], p["Size"]) for p in parts],
                         [(1, e1, len(p1)), (2, e2, len(p2))])
        self.assertEqual(self.code(s3.complete_multipart_upload, Bucket="multi-1", Key="hand.bin", UploadId=up,
                                   MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e2}]}), "InvalidPart")
        self.assertEqual(self.code(s3.complete_multipart_upload, Bucket="multi-1", Key="hand.bin", UploadId=up,
                                   MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2},
                                                              {"PartNumber": 1, "ETag": e1}]}),
                         "InvalidPartOrder")
        received = self.c.received_bytes()
        r = s3.complete_multipart_upload(Bucket="multi-1", Key="hand.bin", UploadId=up,
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                                    {"PartNumber": 2, "ETag": e2}]})
        self.assertEqual(self.c.received_bytes() - received, 0, "Complete sent bytes to the nodes")
        want = hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p2).digest()).hexdigest()
        self.assertEqual(r["ETag"], '"%s-2"' % want)
        self.assertEqual(s3.head_object(Bucket="multi-1", Key="hand.bin")["ETag"], '"%s-2"' % want)
        self.assertEqual(s3.get_object(Bucket="multi-1", Key="hand.bin")["Body"].read(), p1 + p2)
        self.assertEqual(self.code(s3.list_parts, Bucket="multi-1", Key="hand.bin", UploadId=up), "NoSuchUpload")

        up = s3.create_multipart_upload(Bucket="multi-1", Key="small.bin")["UploadId"]
        e1 = s3.upload_part(Bucket="multi-1", Key="small.bin", UploadId=up, PartNumber=1, Body=b"a")["ETag"]
        e2 = s3.upload_part(Bucket="multi-1", Key="small.bin", UploadId=up, PartNumber=2, Body=b"b")["ETag"]
        self.assertEqual(self.code(s3.complete_multipart_upload, Bucket="multi-1", Key="small.bin", UploadId=up,
                                   MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                              {"PartNumber": 2, "ETag": e2}]}), "EntityTooSmall")
        self.assertEqual(self.code(s3.delete_bucket, Bucket="multi-1"), "BucketNotEmpty")
        s3.abort_multipart_upload(Bucket="multi-1", Key="small.bin", UploadId=up)
        self.assertEqual(self.code(s3.upload_part, Bucket="multi-1", Key="small.bin", UploadId=up, PartNumber=3,
                                   Body=b"c"), "NoSuchUpload")
        self.assertEqual(self.code(s3.upload_part, Bucket="multi-1", Key="small.bin", UploadId="../../x",
                                   PartNumber=1, Body=b"c"), "NoSuchUpload")
        self.assertEqual(self.code(s3.head_object, Bucket="multi-1", Key="small.bin"), "404")
        self.assertEqual(s3.list_multipart_uploads(Bucket="multi-1").get("Uploads", []), [])
        for k in ("big/70m.bin", "hand.bin"):
            s3.delete_object(Bucket="multi-1", Key=k)
        s3.delete_bucket(Bucket="multi-1")

    def test_segmented_bodies(self):
        """--s3-segment-size: a PUT or a part longer than it is stored in segments as it arrives and
        stitched at the end: each byte sent to the nodes once, the object right whole and in ranges,
        a plain MD5 ETag for a PUT; a failed condition or a wrong Content-MD5 leaves nothing; a
        multipart upload of segmented parts is flattened by Complete."""
        gw = Gateway(self.c.address, self.gw_token_file, self.tmp("gw-seg"), "--s3-segment-size", "1M")
        try:
            s3 = self.client(endpoint=gw.endpoint)
            s3.create_bucket(Bucket="seg-1")
            data = os.urandom((5 << 20) + 12345)  # 6 segments, the last short
            received = self.c.received_bytes()
            r = s3.put_object(Bucket="seg-1", Key="s.bin", Body=data)
            self.assertEqual(r["ETag"], '"%s"' % md5(data))
            sent = self.c.received_bytes() - received
            self.assertGreaterEqual(sent, len(data))
            self.assertLessEqual(sent, 3 * len(data))
            self.assertEqual(s3.get_object(Bucket="seg-1", Key="s.bin")["Body"].read(), data)
            self.assertEqual(s3.head_object(Bucket="seg-1", Key="s.bin")["ContentLength"], len(data))
            # Its segments were held in memory (--s3-segment-memory, 128 MiB, has room for two).
            self.assertIn("body=segments-memory", gw.tail(200))
            for lo, hi in (((1 << 20) - 5, (1 << 20) + 5), ((2 << 20) + 1, (4 << 20) + 2), (len(data) - 10, len(data) - 1)):
                got = s3.get_object(Bucket="seg-1", Key="s.bin", Range="bytes=%d-%d" % (lo, hi))["Body"].read()
                self.assertEqual(got, data[lo:hi + 1], (lo, hi))
            # A reader that goes away part way (the next segment's get already running) costs
            # nothing: the object is still served whole after.
            for _ in range(3):
                body = s3.get_object(Bucket="seg-1", Key="s.bin")["Body"]
                self.assertEqual(body.read(100000), data[:100000])
                body.close()
            self.assertEqual(s3.get_object(Bucket="seg-1", Key="s.bin")["Body"].read(), data)
            # The object is its 6 segments (1 MiB each, the last short), out of the namespace.
            _, out, _ = harness.dfs("ls", "/.dfs-s3/segments/", cluster=self.c)
            self.assertGreaterEqual(out.count("/.dfs-s3/segments/"), 6, out)
            harness.dfs("get", "/seg-1/s.bin", self.tmp("s.cli"), cluster=self.c)
            with open(self.tmp("s.cli"), "rb") as f:
                self.assertEqual(f.read(), data)
            # Refusals after the segments were stored: nothing visible, nothing left behind.
            cond = self.client(endpoint=gw.endpoint)
            cond.meta.events.register("before-sign.s3.PutObject",
                                      lambda request, **kw: request.headers.__setitem__("If-None-Match", "*"))
            self.assertEqual(self.code(cond.put_object, Bucket="seg-1", Key="s.bin", Body=data[::-1]),
                             "PreconditionFailed")
            self.assertEqual(s3.get_object(Bucket="seg-1", Key="s.bin")["Body"].read(), data)
            bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
            self.assertEqual(self.code(s3.put_object, Bucket="seg-1", Key="bad.bin", Body=data, ContentMD5=bad),
                             "BadDigest")
            self.assertEqual(self.code(s3.head_object, Bucket="seg-1", Key="bad.bin"), "404")
            _, out, _ = harness.dfs("ls", "/.dfs-s3/puts/", cluster=self.c)
            self.assertNotIn("seg.", out)
            # Multipart with parts of 3 segments each: Complete flattens them into one object.
            up = s3.create_multipart_upload(Bucket="seg-1", Key="m.bin")["UploadId"]
            p1, p2 = data[:5 << 20], data[5 << 20:]
            e1 = s3.upload_part(Bucket="seg-1", Key="m.bin", UploadId=up, PartNumber=1, Body=p1)["ETag"]
            e2 = s3.upload_part(Bucket="seg-1", Key="m.bin", UploadId=up, PartNumber=2, Body=p2)["ETag"]
            self.assertEqual(e1, '"%s"' % md5(p1))
            parts = s3.list_parts(Bucket="seg-1", Key="m.bin", UploadId=up)["Parts"]
            self.assertEqual([(p["PartNumber"], p["Size"]) for p in parts], [(1, len(p1)), (2, len(p2))])
            s3.complete_multipart_upload(Bucket="seg-1", Key="m.bin", UploadId=up,
                                         MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1},
                                                                    {"PartNumber": 2, "ETag": e2}]})
            self.assertEqual(s3.get_object(Bucket="seg-1", Key="m.bin")["Body"].read(), data)
            got = s3.get_object(Bucket="seg-1", Key="m.bin", Range="bytes=%d-%d" % ((5 << 20) - 3, (5 << 20) + 3))
            self.assertEqual(got["Body"].read(), data[(5 << 20) - 3:(5 << 20) + 4])
            for k in ("s.bin", "m.bin"):
                s3.delete_object(Bucket="seg-1", Key=k)
            s3.delete_bucket(Bucket="seg-1")
            _, out, _ = harness.dfs("ls", "/.dfs-s3/", cluster=self.c)
            self.assertNotIn("/.dfs-s3/puts/", out)
            self.assertNotIn("/.dfs-s3/uploads/seg-1/", out)
        finally:
            problems = gw.stop()
            self.assertEqual(problems, [])
        # With no segment memory (--s3-segment-memory 0) the segments are spooled: the same bytes.
        gw = Gateway(self.c.address, self.gw_token_file, self.tmp("gw-seg-spool"), "--s3-segment-size", "1M",
                     "--s3-segment-memory", "0")
        try:
            s3 = self.client(endpoint=gw.endpoint)
            s3.create_bucket(Bucket="seg-2")
            r = s3.put_object(Bucket="seg-2", Key="s.bin", Body=data)
            self.assertEqual(r["ETag"], '"%s"' % md5(data))
            self.assertIn("body=segments-spool", gw.tail(200))
            self.assertEqual(s3.get_object(Bucket="seg-2", Key="s.bin")["Body"].read(), data)
            got = s3.get_object(Bucket="seg-2", Key="s.bin", Range="bytes=%d-%d" % ((1 << 20) - 5, (3 << 20) + 5))
            self.assertEqual(got["Body"].read(), data[(1 << 20) - 5:(3 << 20) + 6])
            s3.delete_object(Bucket="seg-2", Key="s.bin")
            s3.delete_bucket(Bucket="seg-2")
            _, out, _ = harness.dfs("ls", "/.dfs-s3/", cluster=self.c)
            self.assertNotIn("/.dfs-s3/puts/", out)
        finally:
            problems = gw.stop()
            self.assertEqual(problems, [])

    def test_abandoned_uploads_expire(self):
        """--s3-upload-timeout: an upload left open is aborted and its parts removed."""
        gw = Gateway(self.c.address, self.gw_token_file, self.tmp("gw-expiry"), "--s3-upload-timeout", "2s")
        try:
            s3 = self.client(endpoint=gw.endpoint)
            s3.create_bucket(Bucket="expiry-1")
            up = s3.create_multipart_upload(Bucket="expiry-1", Key="left.bin")["UploadId"]
            s3.upload_part(Bucket="expiry-1", Key="left.bin", UploadId=up, PartNumber=1, Body=b"x" * 1000)
            self.assertEqual(len(s3.list_parts(Bucket="expiry-1", Key="left.bin", UploadId=up)["Parts"]), 1)
            deadline = time.monotonic() + 30
            while s3.list_multipart_uploads(Bucket="expiry-1").get("Uploads"):
                self.assertLess(time.monotonic(), deadline, "the upload did not expire:\n" + gw.tail())
                time.sleep(0.2)
            self.assertEqual(self.code(s3.list_parts, Bucket="expiry-1", Key="left.bin", UploadId=up),
                             "NoSuchUpload")
            _, out, _ = harness.dfs("ls", "/.dfs-s3/uploads/expiry-1/", cluster=self.c)
            self.assertNotIn(up, out)
            s3.delete_bucket(Bucket="expiry-1")
        finally:
            problems = gw.stop()
            self.assertEqual(problems, [])

    def test_crash_leftovers_swept(self):
        """A gateway killed (SIGKILL) in the middle of a segmented PUT leaves its stored segments under
        /.dfs-s3/puts/; a part stored for an upload whose record is gone stays under its folder. A
        gateway started later sweeps both once they are older than --s3-upload-timeout."""
        gw = Gateway(self.c.address, self.gw_token_file, self.tmp("gw-crash"), "--s3-segment-size", "1M")
        s3 = self.client(endpoint=gw.endpoint)
        s3.create_bucket(Bucket="crash-1")
        up = s3.create_multipart_upload(Bucket="crash-1", Key="o.bin")["UploadId"]
        s3.upload_part(Bucket="crash-1", Key="o.bin", UploadId=up, PartNumber=1, Body=b"p" * 1000)
        harness.dfs("rm", "/.dfs-s3/uploads/crash-1/%s/upload" % up, cluster=self.c)
        captured = {}

        def capture(request, **_):
            u = urllib.parse.urlsplit(request.url)
            body = request.body
            if hasattr(body, "read"):
                body = body.read()
            headers = [(k if isinstance(k, str) else k.decode(), v if isinstance(v, str) else v.decode())
                       for k, v in request.headers.items()]
            captured["req"] = (request.method, u.path + ("?" + u.query if u.query else ""),
                               [("Host", u.netloc)] + headers, body)
            raise RuntimeError("captured")

        cap = self.client(endpoint=gw.endpoint)
        cap.meta.events.register("before-send.s3", capture)
        data = os.urandom(6 << 20)
        with self.assertRaises(RuntimeError):
            cap.put_object(Bucket="crash-1", Key="cut.bin", Body=data)
        method, target, headers, body = captured["req"]
        import socket
        sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
        try:
            head = "%s %s HTTP/1.1\r\n" % (method, target) + "".join(
                "%s: %s\r\n" % (k, v) for k, v in headers if k.lower() != "expect") + "\r\n"
            sock.sendall(head.encode("latin-1") + body[:(3 << 20) + 100])
            deadline = time.monotonic() + 60
            while True:  # two segments stored (the third is filling): the PUT is mid-way
                _, out, _ = harness.dfs("ls", "/.dfs-s3/puts/", cluster=self.c)
                if out.count("/seg.") >= 2:
                    break
                self.assertLess(time.monotonic(), deadline, "no segment stored:\n" + gw.tail())
                time.sleep(0.1)
            os.kill(gw.proc.pid, signal.SIGKILL)
            gw.proc.wait()
            gw.log.close()
        finally:
            sock.close()
        _, out, _ = harness.dfs("ls", "/.dfs-s3/", cluster=self.c)
        self.assertIn("/seg.", out)
        self.assertIn("/.dfs-s3/uploads/crash-1/%s/part." % up, out)
        # A gateway with the default timeout (7 days) leaves them: they may be a live upload's.
        gw = Gateway(self.c.address, self.gw_token_file, self.tmp("gw-crash2"))
        time.sleep(1)
        problems = gw.stop()
        self.assertEqual(problems, [])
        _, out, _ = harness.dfs("ls", "/.dfs-s3/", cluster=self.c)
        self.assertIn("/seg.", out)
        gw = Gateway(self.c.address, self.gw_token_file, self.tmp("gw-crash3"), "--s3-upload-timeout", "2s")
        try:
            deadline = time.monotonic() + 30
            while True:
                _, out, _ = harness.dfs("ls", "/.dfs-s3/", cluster=self.c)
                if "/.dfs-s3/puts/" not in out and "/.dfs-s3/uploads/crash-1/" not in out:
                    break
                self.assertLess(time.monotonic(), deadline, "leftovers not swept:\n" + out + gw.tail())
                time.sleep(0.2)
            self.assertIn("s3 orphan removed", gw.tail(200))
            s3 = self.client(endpoint=gw.endpoint)
            self.assertEqual(self.code(s3.head_object, Bucket="crash-1", Key="cut.bin"), "404")
            s3.delete_bucket(Bucket="crash-1")
        finally:
            problems = gw.stop()
            self.assertEqual(problems, [])

    def test_64_clients_in_bounded_memory(self):
        """64 boto3 clients at once, each putting 4 MiB and getting it back (aws-chunked-free plain
        PUTs and streamed GETs): every byte right, and the gateway's resident memory stays bounded
        (bodies in memory within --s3-body-memory, 16 MiB, the others spooled; GETs through a pipe),
        not 64 x 4 MiB more than it started with."""
        import threading
        s3 = self.client()
        s3.create_bucket(Bucket="many-1")
        base = rss_kib(self.gw.proc.pid)
        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kib(self.gw.proc.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        failures = []

        def one(i):
            try:
                c = self.client()
                data = (b"%08d" % i) * (512 << 10)  # 4 MiB
                c.put_object(Bucket="many-1", Key="k/%02d" % i, Body=data)
                if c.get_object(Bucket="many-1", Key="k/%02d" % i)["Body"].read() != data:
                    failures.append("%d: wrong bytes" % i)
            except Exception as e:
                failures.append("%d: %s" % (i, e))

        try:
            threads = [threading.Thread(target=one, args=(i,)) for i in range(64)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            stop.set()
            sampler.join()
        self.assertEqual(failures, [])
        grew = (peak[0] - base) >> 10
        print("    gateway RSS: %d MiB before, peak %d MiB with 64 clients (+%d MiB)" % (
            base >> 10, peak[0] >> 10, grew), flush=True)
        if not SANITIZED:
            self.assertLess(grew, 128, "the gateway's memory grew with the bodies")
        s3.delete_objects(Bucket="many-1", Delete={"Objects": [{"Key": "k/%02d" % i} for i in range(64)]})
        s3.delete_bucket(Bucket="many-1")

    def test_s3cmd(self):
        if shutil.which("s3cmd") is None:
            self.skipTest("s3cmd is not installed (tools/bootstrap installs it)")
        cfg = self.tmp("s3cfg")

        def s3cmd(*args, secret=None, ok=True):
            with open(cfg, "w") as f:
                f.write("[default]\naccess_key = %s\nsecret_key = %s\nhost_base = %s\nhost_bucket = %s\n"
                        "use_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n"
                        % (self.key_id, secret or self.secret, self.gw.s3_address, self.gw.s3_address))
            env = dict(os.environ, HOME=self.tmp("home"))
            os.makedirs(env["HOME"], exist_ok=True)
            p = subprocess.run(["s3cmd", "-c", cfg, "--no-progress"] + list(args), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env, timeout=300)
            out = p.stdout.decode(errors="replace")
            if ok != (p.returncode == 0):
                self.fail("s3cmd %s exited %d:\n%s\n%s" % (" ".join(args), p.returncode, out, self.gw.tail()))
            return out

        src = self.tmp("photo one+é.jpg")
        data = os.urandom(66 << 20)  # multipart: s3cmd's parts are 15 MiB (5 parts, stitched)
        with open(src, "wb") as f:
            f.write(data)
        s3cmd("mb", "s3://photos-1")
        s3cmd("put", src, "s3://photos-1/2023/summer +é/")
        s3cmd("put", src, "s3://photos-1/plain.jpg")
        out = s3cmd("ls", "s3://photos-1")
        self.assertIn("DIR", out)
        self.assertIn("s3://photos-1/2023/", out)
        self.assertIn("s3://photos-1/plain.jpg", out)
        out = s3cmd("ls", "-r", "s3://photos-1")
        self.assertIn("s3://photos-1/2023/summer +é/photo one+é.jpg", out)
        s3cmd("get", "--force", "s3://photos-1/2023/summer +é/photo one+é.jpg", self.tmp("got"))
        with open(self.tmp("got"), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertIn("s3://photos-1", s3cmd("ls"))
        out = s3cmd("put", src, "s3://photos-1/x.jpg", secret="wrong-secret", ok=False)
        self.assertIn("SignatureDoesNotMatch", out)
        s3cmd("del", "s3://photos-1/plain.jpg")
        s3cmd("del", "-r", "--force", "s3://photos-1/2023/")
        s3cmd("rb", "s3://photos-1")
        self.assertNotIn("s3://photos-1", s3cmd("ls"))

    def curl(self, url):
        out = self.tmp("curl.out")
        p = subprocess.run(["curl", "-s", "-o", out, "-w", "%{http_code}", url], stdout=subprocess.PIPE, timeout=60)
        with open(out, "rb") as f:
            return int(p.stdout), f.read()

    def test_presigned_and_refusals(self):
        s3 = self.client()
        s3.create_bucket(Bucket="pre-1")
        data = os.urandom(100000)
        s3.put_object(Bucket="pre-1", Key="f b.bin", Body=data)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "pre-1", "Key": "f b.bin"}, ExpiresIn=300)
        self.assertEqual(self.curl(url), (200, data))
        # Expired.
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "pre-1", "Key": "f b.bin"}, ExpiresIn=1)
        time.sleep(2.1)
        status, body = self.curl(url)
        self.assertEqual(status, 403)
        self.assertIn(b"<Code>AccessDenied</Code>", body)
        self.assertIn(b"Request has expired", body)
        # Tampered: another key under the same signature.
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "pre-1", "Key": "f b.bin"}, ExpiresIn=300)
        status, body = self.curl(url.replace("f%20b.bin", "other"))
        self.assertEqual(status, 403)
        self.assertIn(b"SignatureDoesNotMatch", body)
        # Anonymous.
        status, body = self.curl(self.gw.endpoint + "/pre-1/f%20b.bin")
        self.assertEqual(status, 403)
        self.assertIn(b"<Code>AccessDenied</Code>", body)
        # Wrong secret, unknown key.
        self.assertEqual(self.code(self.client(secret="x" * 40).list_buckets), "SignatureDoesNotMatch")
        self.assertEqual(self.code(self.client(key_id="DFS0000000000000000").list_buckets), "InvalidAccessKeyId")
        self.assertEqual(self.code(self.client(key_id="AKIAIOSFODNN7EXAMPLE").list_buckets), "InvalidAccessKeyId")
        # A clock 20 minutes off.
        real = datetime.datetime

        class Skewed(real):
            @classmethod
            def utcnow(cls):
                return real.utcnow() - datetime.timedelta(minutes=20)

        with unittest.mock.patch.object(botocore.auth.datetime, "datetime", Skewed):
            self.assertEqual(self.code(self.client().list_buckets), "RequestTimeTooSkewed")
        s3.list_buckets()
        # A read-only key reads and may not write; a revoked key stops working.
        ro_id, ro_secret = self.make_key("read_only")
        ro = self.client(ro_id, ro_secret)
        self.assertEqual(ro.get_object(Bucket="pre-1", Key="f b.bin")["Body"].read(), data)
        self.assertEqual(self.code(ro.put_object, Bucket="pre-1", Key="k", Body=b"x"), "AccessDenied")
        self.assertEqual(self.code(ro.delete_object, Bucket="pre-1", Key="f b.bin"), "AccessDenied")
        gone_id, gone_secret = self.make_key("read_write")
        harness.dfs("token", "revoke", gone_id[3:].lower(), cluster=self.c)
        self.assertEqual(self.code(self.client(gone_id, gone_secret).list_buckets), "InvalidAccessKeyId")
        s3.delete_object(Bucket="pre-1", Key="f b.bin")
        s3.delete_bucket(Bucket="pre-1")
        # The gateway's own token (role gateway) makes no tokens and moves no nodes.
        rc, _, err = harness.dfs("token", "create", "--role", "admin", cluster=self.c,
                                 env={"DFS_TOKEN_FILE": self.gw_token_file}, check=False)
        self.assertNotEqual(rc, 0)
        self.assertIn("may not call", err)

    def replay(self, method, target, headers, body):
        conn = http.client.HTTPConnection("127.0.0.1", self.gw.port, timeout=60)
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        if any(k.lower() == "transfer-encoding" for k, _ in headers):
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        if body:
            conn.send(body)
        r = conn.getresponse()
        out = r.status, r.read()
        conn.close()
        return out

    def test_aws_chunked(self):
        """aws-chunked bodies (STREAMING-UNSIGNED-PAYLOAD-TRAILER, what boto3 sends over TLS) are taken;
        a body whose trailing checksum does not match leaves nothing visible; virtual-host addressing."""
        s3 = self.client()
        s3.create_bucket(Bucket="chunked-1")
        captured = {}

        def capture(request, **_):
            u = urllib.parse.urlsplit(request.url)
            body = request.body
            if hasattr(body, "read"):
                body = body.read()
            headers = [(k if isinstance(k, str) else k.decode(), v if isinstance(v, str) else v.decode())
                       for k, v in request.headers.items()]
            body = body or b""
            if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
                headers.append(("Content-Length", str(len(body))))  # what urllib3 adds
            captured["req"] = (request.method, u.path + ("?" + u.query if u.query else ""),
                               [("Host", u.netloc)] + headers, body)
            raise RuntimeError("captured")

        tls = self.client(endpoint="https://%s" % self.gw.s3_address)
        tls.meta.events.register("before-send.s3", capture)
        data = os.urandom(200000)
        with self.assertRaises(RuntimeError):
            tls.put_object(Bucket="chunked-1", Key="c.bin", Body=data, ChecksumAlgorithm="CRC32")
        method, target, headers, body = captured["req"]
        self.assertIn(("Content-Encoding", "aws-chunked"), headers)
        status, resp = self.replay(method, target, headers, body)
        self.assertEqual(status, 200, resp)
        self.assertEqual(s3.get_object(Bucket="chunked-1", Key="c.bin")["Body"].read(), data)
        # The checksum it was proven by is kept, and returned (and checked by botocore) on request.
        import zlib
        want = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        r = s3.get_object(Bucket="chunked-1", Key="c.bin", ChecksumMode="ENABLED")
        self.assertEqual(r["ChecksumCRC32"], want)
        self.assertEqual(r["Body"].read(), data)
        self.assertNotIn("ChecksumCRC32", s3.get_object(Bucket="chunked-1", Key="c.bin"))
        # The same upload under another key with the trailer's checksum changed: refused, not stored.
        with self.assertRaises(RuntimeError):
            tls.put_object(Bucket="chunked-1", Key="bad.bin", Body=data, ChecksumAlgorithm="CRC32")
        method, target, headers, body = captured["req"]
        i = body.rindex(b"x-amz-checksum-crc32:") + len(b"x-amz-checksum-crc32:")
        body = body[:i] + b"AAAAAA==" + body[i + 8:]
        status, resp = self.replay(method, target, headers, body)
        self.assertEqual(status, 400, resp)
        self.assertIn(b"<Code>BadDigest</Code>", resp)
        self.assertEqual(self.code(s3.head_object, Bucket="chunked-1", Key="bad.bin"), "404")
        # A body cut off: the connection closes half way; nothing becomes visible.
        plain = self.client()
        plain.meta.events.register("before-send.s3", capture)
        with self.assertRaises(RuntimeError):
            plain.put_object(Bucket="chunked-1", Key="cut.bin", Body=data)
        method, target, headers, body = captured["req"]
        import socket
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=30) as sock:
            head = "%s %s HTTP/1.1\r\n" % (method, target) + "".join(
                "%s: %s\r\n" % (k, v) for k, v in headers if k.lower() != "expect") + "\r\n"
            sock.sendall(head.encode("latin-1") + body[:len(body) // 2])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the gateway sees the close, then drops the spool
            time.sleep(0.1)
            self.assertEqual(self.code(s3.head_object, Bucket="chunked-1", Key="cut.bin"), "404")
        self.assertEqual([f for f in os.listdir(self.gw.spool) if f.startswith("dfs-s3-")], [])
        # Virtual-host style (--s3-domain s3.dfs.test), the Host header naming the bucket.
        vh = self.client(endpoint="http://s3.dfs.test:%d" % self.gw.port, addressing_style="virtual")
        vh.meta.events.register("before-send.s3", capture)
        with self.assertRaises(RuntimeError):
            vh.put_object(Bucket="chunked-1", Key="v/h.txt", Body=b"virtual")
        method, target, headers, body = captured["req"]
        self.assertIn(("Host", "chunked-1.s3.dfs.test:%d" % self.gw.port), headers)
        self.assertEqual(self.replay(method, target, headers, body)[0], 200)
        with self.assertRaises(RuntimeError):
            vh.get_object(Bucket="chunked-1", Key="v/h.txt")
        self.assertEqual(self.replay(*captured["req"]), (200, b"virtual"))
        s3.delete_object(Bucket="chunked-1", Key="v/h.txt")
        s3.delete_object(Bucket="chunked-1", Key="c.bin")
        s3.delete_bucket(Bucket="chunked-1")


if __name__ == "__main__":
    harness.main()
