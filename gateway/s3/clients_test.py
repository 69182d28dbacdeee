"""Real S3 clients against dfs's S3 protocol modules (gateway/s3), before any server exists.

The clients are Debian's: python3-boto3 / python3-botocore (the independent SigV4 signer, and the
independent reader of our XML) and s3cmd. Each request a client makes is captured as it would go on
the wire and handed to s3inspect (gateway/s3/s3inspect.c), which takes it through the steps
dfs-gateway will: the signature check, request parsing, refused headers, the body as it streams
(aws-chunked, payload hash, Content-MD5, ETag), and what the operation reads from its headers and
XML body. The test checks what s3inspect concluded against what the client meant. The other way
round, the response documents our XML writer produces are handed to botocore's own parsers (as a
response to a real client call) and must read back as written.

boto3's requests are captured in-process, before they are sent (botocore's before-send event), so
no server answers them. s3cmd needs a server: a capture server on loopback answers each request
with s3inspect's verdict (the error body it produced, or success with the ETag it computed) and
nothing else, so s3cmd's own checks (it compares the ETag with the file's MD5) run too.

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
import http.server  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import zlib  # noqa: E402

import boto3  # noqa: E402
import botocore  # noqa: E402
import botocore.awsrequest  # noqa: E402
import botocore.exceptions  # noqa: E402
import botocore.parsers  # noqa: E402
from botocore.config import Config  # noqa: E402

import harness  # noqa: E402

KEY_ID = "DFSTESTKEY0000000001"
SECRET = "dfs/Secret+Key=With/Odd+Chars0123456789"
OTHER_ID = "DFSREADONLY000000002"
OTHER_SECRET = "another-secret"
REGION = "us-east-1"

# Keys with every character class a key may hold: blanks, URL delimiters, sub-delims, '%', '+',
# non-ASCII, and deep paths.
KEYS = [
    "plain.txt",
    "dir/sub/file name with spaces.txt",
    "unicode/\u00e9t\u00e9 \u2603 \U0001F600.bin",
    "sym/+plus&amp=eq;semi:colon@at,comma$dollar'quote(paren)*star!bang~tilde.txt",
    "percent%20literal%2Fslash",
    "q?mark#hash[brackets]{braces}|pipe^caret`tick\\backslash\"dq<lt>gt",
    "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z.dat",
]


def tool_path():
    rel = os.path.join("gateway", "s3", "s3inspect")
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        p = os.path.join(srcdir, os.environ.get("TEST_WORKSPACE", "dfs"), rel)
        if os.path.exists(p):
            return p
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(os.path.dirname(here)), "bazel-bin", rel)


TOOL = tool_path()


def inspect(method, target, headers, body=b"", now=None, keys=None, domain=None, region=None, slice_=None):
    """Run s3inspect on one request; returns {name: value} (lists for repeated names)."""
    args = [TOOL, "--now", str(int(time.time()) if now is None else int(now))]
    for k in keys if keys is not None else ((KEY_ID, SECRET, 2), (OTHER_ID, OTHER_SECRET, 3)):
        args += ["--key", "%s:%s:%d" % k]
    if domain:
        args += ["--domain", domain]
    if region:
        args += ["--region", region]
    if slice_:
        args += ["--slice", str(slice_)]
    head = "%s %s\n" % (method, target)
    for name, value in headers:
        head += "%s: %s\n" % (name, value)
    data = head.encode("utf-8", "surrogateescape") + b"\n" + body
    p = subprocess.run(args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    if p.returncode != 0:
        raise AssertionError("s3inspect exited %d: %s" % (p.returncode, p.stderr.decode(errors="replace")))
    out = {}
    for line in p.stdout.decode().splitlines():
        name, _, value = line.partition("\t")
        value = urllib.parse.unquote(value, errors="surrogateescape")
        if name in ("delete.key", "complete.part"):
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


class Captured(Exception):
    def __init__(self, request):
        super().__init__("captured")
        self.request = request


def _text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v


def wire(request):
    """An AWSPreparedRequest as an HTTP client would send it: method, target, headers, body."""
    u = urllib.parse.urlsplit(request.url)
    target = u.path + ("?" + u.query if u.query else "")
    headers = [(_text(k), _text(v)) for k, v in request.headers.items()]
    if not any(k.lower() == "host" for k, _ in headers):
        headers.insert(0, ("Host", u.netloc))  # what urllib3 adds
    body = request.body
    if body is None:
        body = b""
    elif hasattr(body, "read"):
        body = body.read()
    elif isinstance(body, str):
        body = body.encode()
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers) and body:
        headers.append(("Content-Length", str(len(body))))
    return request.method, target, headers, body


def client(endpoint="http://127.0.0.1:9000", key_id=KEY_ID, secret=SECRET, style="path", **s3):
    s3["addressing_style"] = style
    c = boto3.session.Session().client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=REGION,
        config=Config(signature_version="s3v4", s3=s3, retries={"max_attempts": 1}))

    def capture(request, **_):
        raise Captured(request)

    c.meta.events.register("before-send.s3", capture)
    return c


def call(c, op, **params):
    """The request a client call sends (never sent)."""
    try:
        getattr(c, op)(**params)
    except Captured as e:
        return wire(e.request)
    raise AssertionError("%s sent nothing" % op)


class RawBody:
    def __init__(self, data):
        self.data = data

    def stream(self, **_):
        yield self.data


def answering(document, status=200, headers=None):
    """A client whose calls get `document` as the response, parsed by botocore as S3's."""
    c = boto3.session.Session().client(
        "s3", endpoint_url="http://127.0.0.1:9000", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
        region_name=REGION, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def respond(request, **_):
        h = {"Content-Type": "application/xml"}
        h.update(headers or {})
        return botocore.awsrequest.AWSResponse(request.url, status, h, RawBody(document))

    c.meta.events.register("before-send.s3", respond)
    return c


def sample(name):
    p = subprocess.run([TOOL, "--xml", name], stdout=subprocess.PIPE, check=True, timeout=30)
    return p.stdout


def md5(b):
    return hashlib.md5(b).hexdigest()


class S3Clients(harness.TestCase):
    def check(self, r, op, bucket=None, key=None, ok=True):
        if ok and r.get("result") != "ok":
            self.fail("%s refused: %s %s\n%s" % (op, r.get("code"), r.get("message"), r.get("error_xml")))
        self.assertEqual(r.get("op"), op)
        self.assertEqual(r.get("key_id"), KEY_ID)
        if bucket is not None:
            self.assertEqual(r.get("bucket"), bucket)
        if key is not None:
            self.assertEqual(r.get("key"), key)

    def test_botocore_version(self):
        # The independent signer is Debian's package, whatever else is installed.
        print("    botocore %s (%s), boto3 %s, python %s" % (
            botocore.__version__, os.path.dirname(botocore.__file__), boto3.__version__, sys.version.split()[0]))
        if os.path.exists(_DEBIAN_PYTHON):
            self.assertTrue(botocore.__file__.startswith("/usr/lib/python3/dist-packages/"), botocore.__file__)

    def test_objects(self):
        """PutObject, GetObject, HeadObject, DeleteObject for awkward keys, over http and https, path and
        virtual-host addressing, signed, unsigned, aws-chunked payloads and trailing checksums."""
        rnd = random.Random(17)
        variants = [
            ("http path", client(), None, {}),
            ("http virtual", client("http://s3.dfs.test:9000", style="virtual"), "s3.dfs.test", {}),
            ("https path (unsigned payload)", client("https://127.0.0.1:9443"), None, {}),
            ("https signed payload", client("https://127.0.0.1:9443", payload_signing_enabled=True), None, {}),
            ("http CRC32 header", client(), None, {"ChecksumAlgorithm": "CRC32"}),
            ("https CRC32 trailer", client("https://127.0.0.1:9443"), None, {"ChecksumAlgorithm": "CRC32"}),
            ("https SHA256 trailer", client("https://127.0.0.1:9443"), None, {"ChecksumAlgorithm": "SHA256"}),
        ]
        for name, c, domain, extra in variants:
            for key in KEYS:
                with self.subTest(variant=name, key=key):
                    data = bytes(rnd.getrandbits(8) for _ in range(rnd.choice([0, 1, 1000, 70000])))
                    req = call(c, "put_object", Bucket="bucket-1", Key=key, Body=data, ContentType="image/png",
                               Metadata={"color": "blue", "Mixed-Case": "x y"}, CacheControl="max-age=60",
                               ContentDisposition='attachment; filename="f.png"', **extra)
                    r = inspect(*req, domain=domain)
                    self.check(r, "PutObject", "bucket-1", key)
                    self.assertEqual(r["virtual_host"], "1" if domain else "0")
                    self.assertEqual(r["body_len"], str(len(data)))
                    self.assertEqual(r["body_md5"], md5(data))
                    self.assertEqual(r["etag"], '"%s"' % md5(data))
                    self.assertEqual(r["meta.content-type"], "image/png")
                    self.assertEqual(r["meta.x-amz-meta-color"], "blue")
                    self.assertEqual(r["meta.x-amz-meta-mixed-case"], "x y")
                    self.assertEqual(r["meta.cache-control"], "max-age=60")
                    self.assertEqual(r["meta.content-disposition"], 'attachment; filename="f.png"')
                    self.assertNotIn("meta.content-encoding", r)  # aws-chunked is not the object's
                    if "ChecksumAlgorithm" in extra:
                        # Checked against the body, whether it came as a header or a trailer.
                        algo = extra["ChecksumAlgorithm"].lower()
                        self.assertEqual(r["checksum"], "x-amz-checksum-" + algo)
                    if "trailer" in name:
                        self.assertEqual(r["payload"], "streaming-unsigned-trailer")
                        want = (base64.b64encode(zlib.crc32(data).to_bytes(4, "big")) if algo == "crc32"
                                else base64.b64encode(hashlib.sha256(data).digest())).decode()
                        self.assertEqual(r["trailer.x-amz-checksum-" + algo], want)
                    elif "unsigned" in name:
                        self.assertEqual(r["payload"], "unsigned")
                    else:
                        self.assertEqual(r["payload"], "sha256")
                    if "/" not in key.split("/")[-1] and "//" not in key:
                        self.assertEqual(r.get("dfs_path"), "/bucket-1/" + key)

                    when = datetime.datetime(2023, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
                    r = inspect(*call(c, "get_object", Bucket="bucket-1", Key=key, Range="bytes=0-9",
                                      IfMatch='"%s"' % md5(data), IfModifiedSince=when,
                                      ResponseContentType="text/plain"), domain=domain)
                    self.check(r, "GetObject", "bucket-1", key)
                    self.assertEqual(r["range"], "bytes=0-9")
                    self.assertEqual(r["if_match"], '"%s"' % md5(data))
                    self.assertEqual(r["if_modified_since"], str(int(when.timestamp())))
                    self.assertEqual(r["response_content_type"], "text/plain")
                    self.assertEqual(r["reads"], "1")
                    self.check(inspect(*call(c, "head_object", Bucket="bucket-1", Key=key,
                                             IfNoneMatch='"abc"'), domain=domain), "HeadObject", "bucket-1", key)
                    self.check(inspect(*call(c, "delete_object", Bucket="bucket-1", Key=key), domain=domain),
                               "DeleteObject", "bucket-1", key)

    def test_body_slices(self):
        """The same aws-chunked and plain bodies whatever slices they arrive in."""
        data = bytes(range(256)) * 400
        for c in (client("https://127.0.0.1:9443"), client("https://127.0.0.1:9443", payload_signing_enabled=True)):
            req = call(c, "put_object", Bucket="b-1", Key="k", Body=data, ChecksumAlgorithm="CRC32")
            for step in (1, 2, 3, 13, 4096, 65536, 10 ** 6):
                r = inspect(*req, slice_=step)
                self.check(r, "PutObject", "b-1", "k")
                self.assertEqual(r["body_md5"], md5(data))

    def test_multipart(self):
        c = client()
        ch = client("https://127.0.0.1:9443")
        r = inspect(*call(c, "create_multipart_upload", Bucket="big-data", Key="x/large file.bin",
                          Metadata={"origin": "test"}, ContentType="application/x-big"))
        self.check(r, "CreateMultipartUpload", "big-data", "x/large file.bin")
        self.assertEqual(r["meta.x-amz-meta-origin"], "test")
        part = os.urandom(5 << 20)
        for cl, extra in ((c, {}), (ch, {}), (ch, {"ChecksumAlgorithm": "SHA1"})):
            r = inspect(*call(cl, "upload_part", Bucket="big-data", Key="x/large file.bin", UploadId="upl+1/=",
                              PartNumber=7, Body=part, **extra))
            self.check(r, "UploadPart", "big-data", "x/large file.bin")
            self.assertEqual(r["part_number"], "7")
            self.assertEqual(r["upload_id"], "upl+1/=")
            self.assertEqual(r["body_md5"], md5(part))
            if extra:
                self.assertEqual(r["checksum"], "x-amz-checksum-sha1")
        parts = [{"ETag": '"%s"' % md5(bytes([i])), "PartNumber": i} for i in range(1, 40)]
        for cl in (c, ch):
            r = inspect(*call(cl, "complete_multipart_upload", Bucket="big-data", Key="x/large file.bin",
                              UploadId="upl+1/=", MultipartUpload={"Parts": parts}))
            self.check(r, "CompleteMultipartUpload", "big-data", "x/large file.bin")
            self.assertEqual(r["complete.part"], ["%d %s" % (p["PartNumber"], p["ETag"]) for p in parts])
        r = inspect(*call(c, "abort_multipart_upload", Bucket="big-data", Key="x/large file.bin", UploadId="u"))
        self.check(r, "AbortMultipartUpload", "big-data", "x/large file.bin")
        r = inspect(*call(c, "list_parts", Bucket="big-data", Key="k", UploadId="u", MaxParts=3,
                          PartNumberMarker=2))
        self.check(r, "ListParts", "big-data", "k")
        self.assertEqual((r["max"], r["part_number_marker"]), ("3", "2"))
        r = inspect(*call(c, "list_multipart_uploads", Bucket="big-data", Prefix="x/", Delimiter="/",
                          KeyMarker="x/a b", UploadIdMarker="u1", MaxUploads=10))
        self.check(r, "ListMultipartUploads", "big-data")
        self.assertEqual((r["prefix"], r["delimiter"], r["key_marker"], r["upload_id_marker"], r["max"]),
                         ("x/", "/", "x/a b", "u1", "10"))

    def test_buckets_and_listings(self):
        c = client()
        self.check(inspect(*call(c, "list_buckets")), "ListBuckets")
        self.check(inspect(*call(c, "head_bucket", Bucket="photos")), "HeadBucket", "photos")
        self.check(inspect(*call(c, "delete_bucket", Bucket="photos")), "DeleteBucket", "photos")
        self.check(inspect(*call(c, "get_bucket_location", Bucket="photos")), "GetBucketLocation", "photos")
        r = inspect(*call(c, "create_bucket", Bucket="photos"))
        self.check(r, "CreateBucket", "photos")
        self.assertEqual(r["location"], "")
        r = inspect(*call(c, "create_bucket", Bucket="photos",
                          CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}))
        self.check(r, "CreateBucket", "photos")
        self.assertEqual(r["location"], "eu-west-1")
        r = inspect(*call(c, "list_objects", Bucket="photos", Prefix="2023/ä b+c/", Delimiter="/",
                          Marker="2023/ä b+c/x", MaxKeys=5))
        self.check(r, "ListObjects", "photos")
        self.assertEqual((r["prefix"], r["delimiter"], r["marker"], r["max"], r["url_encoding"]),
                         ("2023/ä b+c/", "/", "2023/ä b+c/x", "5", "1"))  # boto3 asks for url encoding
        r = inspect(*call(c, "list_objects_v2", Bucket="photos", Prefix="p", ContinuationToken="tok/+=",
                          StartAfter="p/a", FetchOwner=True, MaxKeys=5000))
        self.check(r, "ListObjectsV2", "photos")
        self.assertEqual((r["continuation_token"], r["start_after"], r["fetch_owner"], r["max"]),
                         ("tok/+=", "p/a", "1", "1000"))
        v = client("http://s3.dfs.test:9000", style="virtual")
        r = inspect(*call(v, "list_objects_v2", Bucket="photos"), domain="s3.dfs.test")
        self.check(r, "ListObjectsV2", "photos")
        self.assertEqual(r["virtual_host"], "1")

    def test_delete_objects(self):
        c = client()
        keys = [KEYS[i % len(KEYS)] + "/%d" % i for i in range(1000)]
        r = inspect(*call(c, "delete_objects", Bucket="bucket-1",
                          Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}))
        self.check(r, "DeleteObjects", "bucket-1")
        self.assertEqual(r["delete.key"], keys)
        self.assertEqual(r["delete.quiet"], "1")
        self.assertEqual(r.get("content_md5"), "ok")  # botocore sends Content-MD5: checked too

    def test_copy_object(self):
        c = client()
        for key in KEYS:
            r = inspect(*call(c, "copy_object", Bucket="dst-1", Key="copy", CopySource={"Bucket": "src-1", "Key": key},
                              MetadataDirective="REPLACE", Metadata={"k": "v"}, CopySourceIfMatch='"e"'))
            self.check(r, "CopyObject", "dst-1", "copy")
            self.assertEqual((r["copy_bucket"], r["copy_key"], r["copy_replace_meta"]), ("src-1", key, "1"))
            self.assertEqual(r["meta.x-amz-meta-k"], "v")
            self.assertEqual(r["if_match"], '"e"')

    def test_presigned_urls(self):
        c = boto3.session.Session().client(
            "s3", endpoint_url="http://127.0.0.1:9000", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
            region_name=REGION, config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
        for key in KEYS:
            now = int(time.time())
            url = c.generate_presigned_url("get_object", Params={"Bucket": "share", "Key": key}, ExpiresIn=3600)
            u = urllib.parse.urlsplit(url)
            req = ("GET", u.path + "?" + u.query, [("Host", u.netloc)])
            r = inspect(*req, now=now)
            self.check(r, "GetObject", "share", key)
            self.assertEqual((r["presigned"], r["payload"]), ("1", "unsigned"))
            # One second past its expiry, and a clock 15 minutes behind the signer.
            r = inspect(*req, now=now + 3601)
            self.assertEqual((r["status"], r["code"], r["message"]), ("403", "AccessDenied", "Request has expired"))
            self.assertEqual(inspect(*req, now=now - 10).get("result"), "ok")
            # Another object, or another key id, with the same signature.
            other = u.path + "x?" + u.query
            self.assertEqual(inspect("GET", other, [("Host", u.netloc)], now=now)["code"], "SignatureDoesNotMatch")
            swapped = u.query.replace(KEY_ID, OTHER_ID)
            self.assertEqual(inspect("GET", u.path + "?" + swapped, [("Host", u.netloc)], now=now)["code"],
                             "SignatureDoesNotMatch")
        # A presigned PUT, with its body.
        url = c.generate_presigned_url("put_object", Params={"Bucket": "share", "Key": "up load"}, ExpiresIn=60)
        u = urllib.parse.urlsplit(url)
        r = inspect("PUT", u.path + "?" + u.query, [("Host", u.netloc), ("Content-Length", "5")], b"hello")
        self.check(r, "PutObject", "share", "up load")
        self.assertEqual(r["body_md5"], md5(b"hello"))
        # Longer than 7 days: botocore signs it, dfs refuses it.
        url = c.generate_presigned_url("get_object", Params={"Bucket": "share", "Key": "k"}, ExpiresIn=604801)
        u = urllib.parse.urlsplit(url)
        r = inspect("GET", u.path + "?" + u.query, [("Host", u.netloc)])
        self.assertEqual(r["code"], "AuthorizationQueryParametersError")

    def test_refusals(self):
        """Wrong secret, unknown key, skewed clock, tampered body, and what botocore makes of our errors."""
        req = call(client(secret="not-the-secret"), "put_object", Bucket="b-1", Key="k", Body=b"x")
        r = inspect(*req)
        self.assertEqual((r["status"], r["code"]), ("403", "SignatureDoesNotMatch"))
        with self.assertRaises(botocore.exceptions.ClientError) as cm:
            answering(r["error_xml"].encode(), 403).put_object(Bucket="b-1", Key="k", Body=b"x")
        err = cm.exception.response["Error"]
        self.assertEqual(err["Code"], "SignatureDoesNotMatch")
        self.assertIn("StringToSign", err)
        self.assertIn("CanonicalRequest", err)

        r = inspect(*call(client(key_id="NOSUCHKEY"), "list_buckets"))
        self.assertEqual((r["status"], r["code"]), ("403", "InvalidAccessKeyId"))
        req = call(client(), "list_buckets")
        r = inspect(*req, now=time.time() + 16 * 60)
        self.assertEqual((r["status"], r["code"]), ("403", "RequestTimeTooSkewed"))
        r = inspect(*req, now=time.time() - 16 * 60)
        self.assertEqual(r["code"], "RequestTimeTooSkewed")
        self.assertEqual(inspect(*req, now=time.time() + 14 * 60).get("result"), "ok")
        # A region the gateway is not configured for: botocore reads the region we expect.
        r = inspect(*req, region="eu-west-3")
        self.assertEqual(r["code"], "AuthorizationHeaderMalformed")
        self.assertIn("<Region>eu-west-3</Region>", r["error_xml"])
        # The body changed after signing (payload hash), or an aws-chunked body cut short.
        method, target, headers, body = call(client(), "put_object", Bucket="b-1", Key="k", Body=b"original")
        r = inspect(method, target, headers, b"tampered")
        self.assertEqual((r["status"], r["code"]), ("400", "XAmzContentSHA256Mismatch"))
        method, target, headers, body = call(client("https://127.0.0.1:9443"), "put_object", Bucket="b-1", Key="k",
                                             Body=b"x" * 100000, ChecksumAlgorithm="CRC32")
        r = inspect(method, target, headers, body[:-10])
        self.assertEqual(r["code"], "IncompleteBody")
        # The body is not signed in STREAMING-UNSIGNED-PAYLOAD-TRAILER: only its checksum proves it.
        # A trailer that does not match, and data changed under a good trailer: both refused.
        bad = body[:body.rindex(b"x-amz-checksum-crc32:") + 21] + b"AAAAAA==\r\n\r\n"
        r = inspect(method, target, headers, bad)
        self.assertEqual((r["status"], r["code"]), ("400", "BadDigest"))
        m3, t3, h3, b3 = call(client("https://127.0.0.1:9443"), "put_object", Bucket="b-1", Key="k",
                              Body=b"y" * 1000, ChecksumAlgorithm="SHA1")
        self.assertEqual(inspect(m3, t3, h3, b3).get("checksum"), "x-amz-checksum-sha1")
        r = inspect(m3, t3, h3, b3.replace(b"y" * 1000, b"z" * 1000))
        self.assertEqual((r["status"], r["code"]), ("400", "BadDigest"))
        # A header added on the way.
        r = inspect(method, target, headers + [("x-amz-meta-added", "1")], body)
        self.assertEqual(r["code"], "AccessDenied")
        # Anonymous.
        r = inspect("GET", "/b-1/k", [("Host", "127.0.0.1:9000")])
        self.assertEqual((r["status"], r["code"]), ("403", "AccessDenied"))

    def test_errors_read_by_botocore(self):
        for code, status, op, params in [
            ("NoSuchKey", 404, "get_object", {"Bucket": "bucket", "Key": "a&b"}),
            ("NoSuchBucket", 404, "list_objects_v2", {"Bucket": "bucket"}),
            ("NoSuchUpload", 404, "list_parts", {"Bucket": "bucket", "Key": "k", "UploadId": "u"}),
            ("BucketNotEmpty", 409, "delete_bucket", {"Bucket": "bucket"}),
            ("BucketAlreadyOwnedByYou", 409, "create_bucket", {"Bucket": "bucket"}),
            ("InvalidPartOrder", 400, "complete_multipart_upload",
             {"Bucket": "bucket", "Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": [{"ETag": "e", "PartNumber": 1}]}}),
            ("EntityTooSmall", 400, "complete_multipart_upload",
             {"Bucket": "bucket", "Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": [{"ETag": "e", "PartNumber": 1}]}}),
            ("InvalidRange", 416, "get_object", {"Bucket": "bucket", "Key": "k", "Range": "bytes=9-"}),
            ("PreconditionFailed", 412, "get_object", {"Bucket": "bucket", "Key": "k", "IfMatch": "x"}),
            ("MalformedXML", 400, "delete_objects", {"Bucket": "bucket", "Delete": {"Objects": [{"Key": "k"}]}}),
        ]:
            with self.subTest(code=code):
                doc = sample("error-" + code)
                with self.assertRaises(botocore.exceptions.ClientError) as cm:
                    getattr(answering(doc, status), op)(**params)
                err = cm.exception.response["Error"]
                self.assertEqual(err["Code"], code)
                self.assertEqual(err["Message"], "sample of " + code)
                self.assertEqual(cm.exception.response["ResponseMetadata"]["HTTPStatusCode"], status)

    def test_documents_read_by_botocore(self):
        names = {"photos/a b&c<d>.jpg", "photos/\u00e9t\u00e9+plus"}
        r = answering(sample("list-buckets")).list_buckets()
        self.assertEqual([b["Name"] for b in r["Buckets"]], ["alpha", "beta.two"])
        self.assertEqual(r["Buckets"][0]["CreationDate"],
                         datetime.datetime(2009, 10, 12, 18, 30, 30, tzinfo=datetime.timezone.utc))
        self.assertEqual(r["Owner"], {"ID": "dfs-0123456789abcdef", "DisplayName": "ci-key"})

        # boto3 asks for encoding-type=url and decodes what comes back: served the url-encoded form.
        r = answering(sample("list-v2-url")).list_objects_v2(Bucket="bucket", Prefix="photos/", Delimiter="/")
        self.assertEqual({o["Key"] for o in r["Contents"]}, names)
        self.assertEqual([p["Prefix"] for p in r["CommonPrefixes"]], ["photos/2023/", "photos/a&b/"])
        self.assertEqual((r["KeyCount"], r["MaxKeys"], r["IsTruncated"]), (4, 2, True))
        self.assertEqual((r["NextContinuationToken"], r["StartAfter"]), ("token-out", "photos/0"))
        c0 = r["Contents"][0]
        self.assertEqual((c0["ETag"], c0["Size"], c0["StorageClass"]), ('"9e107d9d372bb6826bd81d3542a419d6"', 43,
                                                                        "STANDARD"))
        self.assertEqual(c0["LastModified"], datetime.datetime(2017, 7, 14, 2, 40, 0, 123000,
                                                               tzinfo=datetime.timezone.utc))
        self.assertEqual(c0["Owner"]["ID"], "dfs-0123456789abcdef")
        self.assertNotIn("Owner", r["Contents"][1])
        r = answering(sample("list-v1-url")).list_objects(Bucket="bucket", Prefix="photos/", Delimiter="/")
        self.assertEqual({o["Key"] for o in r["Contents"]}, names)
        self.assertEqual((r["Marker"], r["NextMarker"]), ("photos/0", "photos/\u00e9t\u00e9+plus"))
        # The plain form, read by botocore's parser directly (no url decoding asked for).
        model = boto3.session.Session().client("s3", region_name=REGION).meta.service_model
        parser = botocore.parsers.create_parser("rest-xml")
        for doc, op in (("list-v2", "ListObjectsV2"), ("list-v1", "ListObjects")):
            parsed = parser.parse({"status_code": 200, "headers": {}, "body": sample(doc)},
                                  model.operation_model(op).output_shape)
            self.assertEqual({o["Key"] for o in parsed["Contents"]}, names)
            self.assertEqual(parsed["Delimiter"], "/")

        r = answering(sample("initiate")).create_multipart_upload(Bucket="bucket", Key="big & large")
        self.assertEqual((r["Bucket"], r["Key"], r["UploadId"]), ("bucket", "big & large", "upload-1"))
        r = answering(sample("complete")).complete_multipart_upload(
            Bucket="bucket", Key="big", UploadId="upload-1", MultipartUpload={"Parts": [{"ETag": "e", "PartNumber": 1}]})
        self.assertEqual((r["Location"], r["ETag"]), ("http://127.0.0.1:9000/bucket/big",
                                                      '"d41d8cd98f00b204e9800998ecf8427e-3"'))
        r = answering(sample("list-parts")).list_parts(Bucket="bucket", Key="big", UploadId="upload-1")
        self.assertEqual([(p["PartNumber"], p["ETag"], p["Size"]) for p in r["Parts"]],
                         [(1, '"aaa"', 5242880), (2, '"bbb"', 7)])
        self.assertEqual((r["NextPartNumberMarker"], r["MaxParts"], r["IsTruncated"]), (2, 2, True))
        self.assertEqual(r["Initiator"]["DisplayName"], "ci-key")
        r = answering(sample("list-uploads")).list_multipart_uploads(Bucket="bucket", EncodingType="url")
        self.assertEqual([(u["Key"], u["UploadId"]) for u in r["Uploads"]], [("a b", "upload-1"), ("c", "upload-2")])
        self.assertEqual((r["NextKeyMarker"], r["NextUploadIdMarker"]), ("c", "upload-2"))
        r = answering(sample("copy")).copy_object(Bucket="b", Key="k", CopySource="s/k")
        self.assertEqual(r["CopyObjectResult"]["ETag"], '"9e107d9d372bb6826bd81d3542a419d6"')
        r = answering(sample("delete")).delete_objects(Bucket="b", Delete={"Objects": [{"Key": "a"}]})
        self.assertEqual([d["Key"] for d in r["Deleted"]], ["a", "b&c"])
        self.assertEqual([(e["Key"], e["Code"]) for e in r["Errors"]], [("d", "AccessDenied")])
        r = answering(sample("location")).get_bucket_location(Bucket="b")
        self.assertEqual(r["LocationConstraint"], "eu-west-1")


class CaptureServer:
    """HTTP on loopback answering each request with s3inspect's verdict; records every verdict."""

    def __init__(self):
        self.verdicts = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                r = inspect(self.command, self.path, list(self.headers.items()), body)
                outer.verdicts.append(r)
                if r.get("result") != "ok":
                    data = r.get("error_xml", "").encode()
                    self.send_response(int(r.get("status", 500)))
                    self.send_header("Content-Type", "application/xml")
                else:
                    data = b""
                    status = {"DeleteObject": 204, "DeleteBucket": 204}.get(r.get("op"), 200)
                    if r.get("op") == "GetBucketLocation":
                        data = sample("location")
                    self.send_response(status)
                    if "etag" in r:
                        self.send_header("ETag", r["etag"])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=30)


class S3cmd(harness.TestCase):
    def setUp(self):
        super().setUp()
        if shutil.which("s3cmd") is None:
            self.skipTest("s3cmd is not installed (tools/bootstrap installs it)")
        self.server = CaptureServer()
        self.addCleanup(self.server.close)

    def s3cmd(self, secret, *args, ok=True):
        cfg = self.tmp("s3cfg")
        with open(cfg, "w") as f:
            f.write("[default]\naccess_key = %s\nsecret_key = %s\nhost_base = 127.0.0.1:%d\n"
                    "host_bucket = 127.0.0.1:%d\nuse_https = False\nsignature_v2 = False\n"
                    "bucket_location = us-east-1\n" % (KEY_ID, secret, self.server.port, self.server.port))
        env = dict(os.environ, HOME=self.tmp("home"))
        os.makedirs(env["HOME"], exist_ok=True)
        p = subprocess.run(["s3cmd", "-c", cfg, "--no-progress"] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env, timeout=120)
        out = p.stdout.decode(errors="replace")
        if ok and p.returncode != 0:
            self.fail("s3cmd %s exited %d:\n%s" % (" ".join(args), p.returncode, out))
        if not ok and p.returncode == 0:
            self.fail("s3cmd %s succeeded:\n%s" % (" ".join(args), out))
        return out

    def test_s3cmd(self):
        src = self.tmp("photo one+é.jpg")
        data = os.urandom(300000)
        with open(src, "wb") as f:
            f.write(data)
        self.s3cmd(SECRET, "mb", "s3://photos-1")
        self.s3cmd(SECRET, "put", src, "s3://photos-1/2023/summer +é/")
        self.s3cmd(SECRET, "put", src, "s3://photos-1/plain.jpg")
        self.s3cmd(SECRET, "del", "s3://photos-1/plain.jpg")
        self.s3cmd(SECRET, "rb", "s3://photos-1")
        ops = [(v.get("result"), v.get("op"), v.get("key")) for v in self.server.verdicts]
        self.assertIn(("ok", "CreateBucket", None), ops)
        self.assertIn(("ok", "PutObject", "2023/summer +é/photo one+é.jpg"), ops)
        self.assertIn(("ok", "PutObject", "plain.jpg"), ops)
        self.assertIn(("ok", "DeleteObject", "plain.jpg"), ops)
        self.assertIn(("ok", "DeleteBucket", None), ops)
        for v in self.server.verdicts:
            self.assertEqual(v.get("result"), "ok", v)
            if v.get("op") == "PutObject":
                self.assertEqual(v["body_md5"], md5(data))

        # A wrong secret: refused, and s3cmd says why.
        out = self.s3cmd("wrong-secret", "put", src, "s3://photos-1/x.jpg", ok=False)
        self.assertIn("SignatureDoesNotMatch", out)
        self.assertEqual(self.server.verdicts[-1]["code"], "SignatureDoesNotMatch")


if __name__ == "__main__":
    harness.main()
