"""Nimbus runtime bootstrap for Python functions.

Started once per function instance as

    python3 -u $LAMBDA_RUNTIME_DIR/python/bootstrap.py

with cwd = $LAMBDA_TASK_ROOT (or ahead of time as a spare, told later which
instance to become: _become_instance). It imports the module named by $_HANDLER and
then serves invocations from the Lambda Runtime API at
http://$AWS_LAMBDA_RUNTIME_API until the process is killed. Handlers, the
context object, log lines and error payloads behave as in AWS Lambda's own
Python runtime, so code moves between the two unmodified.

The import time of this file is part of every cold start, so it loads only
modules that `import json` loads anyway, plus the C `_socket` module. The
HTTP client is a small HTTP/1.1 keep-alive client on one persistent TCP
connection. `logging` is configured the moment something imports it (an
import hook), and `traceback` is imported only when there is an error to
format.
"""

import os
import sys
import time
import json
import _socket

_API_PREFIX = "/2018-06-01/runtime"
_ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
_ERROR_LOG_LINE_TERMINATE = "\r"
_ERROR_LOG_INDENT = "\u00a0"  # NO-BREAK SPACE, as Lambda uses in error logs
_LAMBDA_WARNING = (
    "LAMBDA_WARNING: Unhandled exception. The most likely cause is an issue in "
    "the function code. However, in rare cases, a Lambda runtime update can "
    "cause unexpected function behavior. For functions using managed runtimes, "
    "runtime updates can be triggered by a function change, or can be applied "
    "automatically. To determine if the runtime has been updated, check the "
    "runtime version in the INIT_START log entry. If this error correlates with "
    "a change in the runtime version, you may be able to mitigate this error by "
    "temporarily rolling back to the previous runtime version. For more "
    "information, see https://docs.aws.amazon.com/lambda/latest/dg/runtimes-update.html"
)

# Per-invocation state read by the logging filter.
_request_id = None
_tenant_id = None

# Read from the environment by _read_environment(), again when a spare is claimed.
_LOG_JSON = False
_LOG_LEVEL = ""


class FaultException(Exception):
    """A runtime-detected failure reported with a `Runtime.*` error type."""

    MARSHAL_ERROR = "Runtime.MarshalError"
    UNMARSHAL_ERROR = "Runtime.UnmarshalError"
    USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
    HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
    IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
    BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
    MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
    LAMBDA_CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"

    def __init__(self, exception_type, msg, trace=None):
        Exception.__init__(self, msg)
        self.exception_type = exception_type
        self.msg = msg
        self.trace = trace


# --------------------------------------------------------------------------
# Runtime API client: HTTP/1.1 over one persistent loopback connection.
# --------------------------------------------------------------------------


class RuntimeAPIError(Exception):
    """The Runtime API is gone or answered something this runtime cannot use."""


class _NoResponse(Exception):
    """The peer closed the connection before sending any response byte."""


class RuntimeClient(object):
    def __init__(self, address):
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("AWS_LAMBDA_RUNTIME_API must be host:port, got %r" % address)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        self._host = host
        self._port = int(port)
        self._authority = address
        self._sock = None
        self._rbuf = b""

    def _connect(self):
        error = None
        host = self._host
        try:
            host = host.encode("ascii")  # a str host would load the idna codec
        except UnicodeEncodeError:
            pass
        for family, kind, proto, _, addr in _socket.getaddrinfo(
            host, self._port, 0, _socket.SOCK_STREAM
        ):
            sock = _socket.socket(family, kind, proto)
            try:
                sock.connect(addr)
            except OSError as e:
                sock.close()
                error = e
                continue
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            return sock
        raise error or OSError("cannot resolve %s" % self._authority)

    def close(self):
        sock, self._sock, self._rbuf = self._sock, None, b""
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def request(self, method, path, body=None, headers=()):
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self._authority)
        for name, value in headers:
            head += "%s: %s\r\n" % (name, value)
        if body is not None:
            head += "Content-Length: %d\r\n" % len(body)
        data = (head + "\r\n").encode("latin-1")
        if body:
            data += body
        while True:
            reused = self._sock is not None
            if not reused:
                self._sock = self._connect()
            try:
                self._sock.sendall(data)
                return self._read_response(method)
            except _NoResponse:
                # A kept-alive connection the server had already closed: retry
                # once on a new one. On a fresh connection it is a real error.
                self.close()
                if not reused:
                    raise RuntimeAPIError("Runtime API closed the connection without a response")
            except BaseException:
                self.close()
                raise

    def _fill(self):
        chunk = self._sock.recv(262144)
        if not chunk:
            raise RuntimeAPIError("Runtime API closed the connection mid-response")
        self._rbuf += chunk

    def _read_response(self, method):
        while True:
            while True:
                end = self._rbuf.find(b"\r\n\r\n")
                if end >= 0:
                    break
                chunk = self._sock.recv(65536)
                if not chunk:
                    if not self._rbuf:
                        raise _NoResponse()
                    raise RuntimeAPIError("Runtime API closed the connection mid-response")
                self._rbuf += chunk
            lines = self._rbuf[:end].decode("latin-1").split("\r\n")
            self._rbuf = self._rbuf[end + 4 :]
            status = int(lines[0].split(None, 2)[1])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if status >= 200:
                break  # skip interim 1xx responses
        keep_alive = "close" not in headers.get("connection", "").lower()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunked()
        elif "content-length" in headers:
            body = self._read_exact(int(headers["content-length"]))
        elif status in (204, 304) or method == "HEAD":
            body = b""
        else:
            while True:  # body delimited by connection close
                chunk = self._sock.recv(262144)
                if not chunk:
                    break
                self._rbuf += chunk
            body, keep_alive = self._rbuf, False
        if not keep_alive:
            self.close()
        return status, headers, body

    def _read_exact(self, n):
        have = len(self._rbuf)
        if have >= n:
            body, self._rbuf = self._rbuf[:n], self._rbuf[n:]
            return body
        buf = bytearray(n)
        buf[:have] = self._rbuf
        self._rbuf = b""
        view = memoryview(buf)
        while have < n:
            got = self._sock.recv_into(view[have:])
            if not got:
                raise RuntimeAPIError("Runtime API closed the connection mid-response")
            have += got
        return bytes(buf)

    def _read_line(self):
        while True:
            i = self._rbuf.find(b"\r\n")
            if i >= 0:
                line, self._rbuf = self._rbuf[:i], self._rbuf[i + 2 :]
                return line
            self._fill()

    def _read_chunked(self):
        parts = []
        while True:
            size = int(self._read_line().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self._read_line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._read_exact(size))
            self._read_line()

    # --- Runtime API operations ---------------------------------------------

    def next_invocation(self):
        status, headers, body = self.request("GET", _API_PREFIX + "/invocation/next")
        if status != 200:
            raise RuntimeAPIError(
                "GET /invocation/next answered %d: %r" % (status, bytes(body[:512]))
            )
        return headers, body

    def post_invocation_result(self, invoke_id, body, content_type):
        self._post(
            "/invocation/%s/response" % _quote(invoke_id),
            body,
            (("Content-Type", content_type),),
        )

    def post_invocation_error(self, invoke_id, error):
        self._post(
            "/invocation/%s/error" % _quote(invoke_id),
            _to_json(error).encode("utf-8"),
            (("Content-Type", "application/json"), (_ERROR_TYPE_HEADER, _header_value(error["errorType"]))),
        )

    def post_init_error(self, error):
        self._post(
            "/init/error",
            _to_json(error).encode("utf-8"),
            (("Content-Type", "application/json"), (_ERROR_TYPE_HEADER, _header_value(error["errorType"]))),
        )

    def _post(self, path, body, headers):
        status, _, answer = self.request("POST", _API_PREFIX + path, body, headers)
        if not 200 <= status < 300:
            # The server owns the outcome (e.g. 413 for an oversized payload);
            # say so on the log and carry on with the next invocation.
            _runtime_warning("POST %s answered %d: %r" % (path, status, answer[:512]))


_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _quote(segment):
    if all(c in _UNRESERVED for c in segment):
        return segment
    return "".join(
        c if c in _UNRESERVED else "".join("%%%02X" % b for b in c.encode("utf-8"))
        for c in segment
    )


def _header_value(value):
    value = str(value).replace("\r", " ").replace("\n", " ")
    return value.encode("latin-1", "replace").decode("latin-1")


def _runtime_warning(message):
    try:
        sys.stderr.write("[nimbus-runtime] %s\n" % message)
        sys.stderr.flush()
    except Exception:
        pass


# --------------------------------------------------------------------------
# JSON marshalling (AWS uses simplejson; emulate its extra cases).
# --------------------------------------------------------------------------


def _json_default(obj):
    cls = type(obj)
    if cls.__name__ == "Decimal" and cls.__module__ in ("decimal", "_decimal", "_pydecimal"):
        if obj.is_nan():
            return float("nan")
        if obj == obj.to_integral_value() and "E" not in str(obj) and "." not in str(obj):
            return int(obj)
        return float(obj)
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj).decode("utf-8")
    raise TypeError("Object of type %s is not JSON serializable" % cls.__name__)


def _make_encoder():
    # AWS's python3.12+ runtimes emit raw UTF-8; older ones escape non-ASCII.
    env = os.environ.get("AWS_EXECUTION_ENV") or ""
    raw_utf8 = False
    if env.startswith("AWS_Lambda_python3."):
        try:
            raw_utf8 = int(env[len("AWS_Lambda_python3.") :]) >= 12
        except ValueError:
            pass
    return json.JSONEncoder(ensure_ascii=not raw_utf8, default=_json_default)


def _read_environment():
    """Settings taken from the environment: at import, and again when a spare
    becomes an instance (its environment is only known then)."""
    global _LOG_JSON, _LOG_LEVEL, _encoder, _to_json
    _LOG_JSON = (os.environ.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON"
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    _LOG_LEVEL = {None: "", "TRACE": "DEBUG"}.get(level, level).upper()
    _encoder = _make_encoder()
    _to_json = _encoder.encode


_read_environment()


def _unmarshal_event(body, content_type):
    if content_type and content_type.split(";", 1)[0].strip().lower() != "application/json":
        return bytes(body)
    try:
        return json.loads(body)
    except Exception as e:
        raise FaultException(
            FaultException.UNMARSHAL_ERROR, "Unable to unmarshal input: %s" % e, None
        )


def _marshal_response(result):
    if isinstance(result, bytes):
        return result, "application/unknown"
    try:
        return _to_json(result).encode("utf-8"), "application/json"
    except Exception as e:
        raise FaultException(
            FaultException.MARSHAL_ERROR, "Unable to marshal response: %s" % e, None
        )


# --------------------------------------------------------------------------
# Context object (attribute names, types and repr as in AWS Lambda).
# --------------------------------------------------------------------------


class LambdaContext(object):
    def __init__(
        self,
        invoke_id,
        client_context,
        cognito_identity,
        epoch_deadline_time_in_ms,
        invoked_function_arn=None,
        tenant_id=None,
    ):
        env = os.environ
        self.aws_request_id = invoke_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id

        self.client_context = _from_dict(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _from_dict(Client, self.client_context.client)

        self.identity = _from_dict(CognitoIdentity, {})
        if cognito_identity is not None:
            self.identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")

        self._epoch_deadline_time_in_ms = epoch_deadline_time_in_ms

    def get_remaining_time_in_millis(self):
        remaining = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return remaining if remaining > 0 else 0

    def log(self, msg):
        _stdout_write(str(msg))  # as AWS: written as is, no newline added

    def __repr__(self):
        return (
            "%s([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,"
            "function_name=%s,memory_limit_in_mb=%s,function_version=%s,"
            "invoked_function_arn=%s,client_context=%s,identity=%s,tenant_id=%s])"
            % (
                self.__class__.__name__,
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
                self.tenant_id,
            )
        )


def _slots_repr(obj):
    return "%s([%s])" % (
        obj.__class__.__name__,
        ",".join("%s=%s" % (name, getattr(obj, name)) for name in obj.__slots__),
    )


class CognitoIdentity(object):
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]
    __repr__ = _slots_repr


class Client(object):
    __slots__ = [
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    ]
    __repr__ = _slots_repr


class ClientContext(object):
    __slots__ = ["custom", "env", "client"]
    __repr__ = _slots_repr


def _from_dict(cls, values):
    if values is None:
        return None
    obj = cls()
    for name in cls.__slots__:
        setattr(obj, name, values.get(name, None))
    return obj


def _parse_json_header(value, name):
    try:
        return json.loads(value)
    except Exception as e:
        raise FaultException(
            FaultException.LAMBDA_CONTEXT_UNMARSHAL_ERROR,
            "Unable to parse %s JSON: %s" % (name, e),
            None,
        )


# --------------------------------------------------------------------------
# Output and logging.
# --------------------------------------------------------------------------


def _stdout_write(text):
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8", "replace"))


def _flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


class StandardLogSink(object):
    """Where Lambda-formatted log records go: this process's stdout.

    Lambda ships each record as one log event; on a pipe a record must end
    with a newline for that (a record with a traceback does not by itself).
    """

    def log(self, msg, frame_type=None):
        _stdout_write(msg if msg.endswith("\n") else msg + "\n")

    def log_error(self, message_lines):
        _stdout_write(_ERROR_LOG_LINE_TERMINATE.join(message_lines) + "\n")


_log_sink = StandardLogSink()


def _replace_indent(line):
    stripped = line.lstrip(" ")
    return _ERROR_LOG_INDENT * (len(line) - len(stripped)) + stripped


def _log_error(error):
    """Print an error result the way Lambda's Python runtime does."""
    if _LOG_JSON:
        record = {"timestamp": _utc_timestamp(time.time()), "level": "ERROR"}
        record.update(error)
        _stdout_write(_to_json(record) + "\n")
        return
    description = "[ERROR]"
    if error.get("errorType"):
        description += " " + error["errorType"]
    if error.get("errorMessage"):
        if error.get("errorType"):
            description += ":"
        description += " " + error["errorMessage"]
    lines = [description]
    stack = error.get("stackTrace")
    if stack is not None:
        lines.append("Traceback (most recent call last):")
        for element in stack:
            if element == "":
                lines.append("")
            else:
                lines.extend(_replace_indent(line) for line in element.splitlines())
    _log_sink.log_error(lines)


def _utc_timestamp(seconds):
    return "%s.%03dZ" % (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)),
        int(seconds * 1000) % 1000,
    )


def _setup_logging(logging):
    """Give the root logger Lambda's handler, format and level."""
    logging.Formatter.converter = time.gmtime

    class LambdaLoggerHandler(logging.Handler):
        def __init__(self, log_sink):
            logging.Handler.__init__(self)
            self.log_sink = log_sink

        def emit(self, record):
            self.log_sink.log(self.format(record))

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record):
            record.aws_request_id = _request_id or ""
            record.tenant_id = _tenant_id
            return True

    handler = LambdaLoggerHandler(_log_sink)
    if _LOG_JSON:
        handler.setFormatter(_json_formatter(logging)())
    else:
        handler.setFormatter(
            logging.Formatter(
                "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                "%Y-%m-%dT%H:%M:%S",
            )
        )
    root = logging.getLogger()
    if _LOG_LEVEL in logging._nameToLevel:
        root.setLevel(_LOG_LEVEL)
    handler.addFilter(LambdaLoggerFilter())
    root.addHandler(handler)


_RESERVED_RECORD_FIELDS = frozenset(
    (
        "name", "msg", "args", "levelname", "levelno", "pathname", "filename",
        "module", "exc_info", "exc_text", "stack_info", "lineno", "funcName",
        "created", "msecs", "relativeCreated", "thread", "threadName",
        "processName", "process", "aws_request_id", "tenant_id", "_frame_type",
    )
)


def _json_formatter(logging):
    """The formatter used when the function's log format is JSON."""
    encode = json.JSONEncoder(ensure_ascii=False).encode

    class JsonFormatter(logging.Formatter):
        def format(self, record):
            level = min(50, max(0, record.levelno)) // 10 * 10
            record.levelno = level
            record.levelname = logging.getLevelName(level)
            exc = record.exc_info
            result = {
                "timestamp": _utc_timestamp(record.created),
                "level": record.levelname,
                "message": record.getMessage(),
                "logger": record.name,
                "stackTrace": None,
                "errorType": None,
                "errorMessage": None,
                "requestId": getattr(record, "aws_request_id", None),
                "location": None,
            }
            if exc:
                import traceback

                result["stackTrace"] = traceback.format_tb(exc[2])
                result["errorType"] = exc[0].__name__
                result["errorMessage"] = str(exc[1])
                result["location"] = "%s:%s:%s" % (record.pathname, record.funcName, record.lineno)
            if getattr(record, "tenant_id", None) is not None:
                result["tenantId"] = record.tenant_id
            for key, value in record.__dict__.items():
                if key not in _RESERVED_RECORD_FIELDS and key not in result:
                    result[key] = value
            result = {k: v for k, v in result.items() if v is not None}
            try:
                return encode(result) + "\n"
            except (TypeError, ValueError):
                return encode({k: v if isinstance(v, (str, int, float, bool, list, dict)) else str(v) for k, v in result.items()}) + "\n"

    return JsonFormatter


class _LoggingImportHook(object):
    """Meta-path finder that configures `logging` right after it is imported.

    Importing and configuring `logging` eagerly would cost several ms of every
    cold start even for functions that never log; this way the root logger
    gets Lambda's handler at the same moment user code first sees `logging`.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "logging":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or isinstance(loader, type) or not hasattr(loader, "exec_module"):
            return spec
        real_exec_module = loader.exec_module

        def exec_module(module):
            real_exec_module(module)
            try:
                del loader.exec_module
            except AttributeError:
                pass
            _setup_logging(module)

        loader.exec_module = exec_module
        return spec

    def invalidate_caches(self):
        pass


def _install_logging():
    logging = sys.modules.get("logging")
    if logging is not None:
        _setup_logging(logging)
    else:
        sys.meta_path.insert(0, _LoggingImportHook())


# --------------------------------------------------------------------------
# Errors.
# --------------------------------------------------------------------------


def _make_error(message, error_type, stack_trace, invoke_id=None):
    return {
        "errorMessage": message if message else "",
        "errorType": error_type if error_type else "",
        "requestId": invoke_id if invoke_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def _error_from_exception(etype, value, tb, invoke_id=None):
    import traceback

    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    # Drop the runtime's own frames from the top of the stack.
    for i, frame in enumerate(frames):
        if "/bootstrap.py" not in frame[0]:
            frames = frames[i:]
            break
    try:
        message = str(value)
    except Exception:
        message = "<exception str() failed>"
    return _make_error(message, etype.__name__, traceback.format_list(frames), invoke_id)


# --------------------------------------------------------------------------
# Loading the handler.
# --------------------------------------------------------------------------


def _get_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultException(
            FaultException.MALFORMED_HANDLER_NAME, "Bad handler '%s': %s" % (handler, e)
        )

    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise FaultException(
                FaultException.BUILT_IN_MODULE_CONFLICT,
                "Cannot use built-in module %s as a handler module" % modname,
            )
        import importlib

        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise FaultException(
            FaultException.IMPORT_MODULE_ERROR,
            "Unable to import module '%s': %s" % (modname, e),
        )
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException(
            FaultException.USER_CODE_SYNTAX_ERROR,
            "Syntax error in module '%s': %s" % (modname, e),
            trace,
        )

    try:
        return getattr(module, fname)
    except AttributeError:
        raise FaultException(
            FaultException.HANDLER_NOT_FOUND,
            "Handler '%s' missing on module '%s'" % (fname, modname),
            None,
        )


# --------------------------------------------------------------------------
# The invocation loop.
# --------------------------------------------------------------------------


def _handle_invocation(client, request_handler, invoke_id, headers, body):
    error = None
    try:
        client_context = headers.get("lambda-runtime-client-context")
        cognito_identity = headers.get("lambda-runtime-cognito-identity")
        context = LambdaContext(
            invoke_id,
            _parse_json_header(client_context, "Client Context") if client_context else None,
            _parse_json_header(cognito_identity, "Cognito Identity") if cognito_identity else None,
            int(headers.get("lambda-runtime-deadline-ms") or 0),
            headers.get("lambda-runtime-invoked-function-arn"),
            headers.get("lambda-runtime-aws-tenant-id"),
        )
        event = _unmarshal_event(body, headers.get("content-type"))
        result = request_handler(event, context)
        payload, content_type = _marshal_response(result)
    except FaultException as e:
        error = _make_error(e.msg, e.exception_type, e.trace, invoke_id)
    except Exception:
        etype, value, tb = sys.exc_info()
        try:
            error = _error_from_exception(etype, value, tb, invoke_id)
        finally:
            etype = value = tb = None

    if error is not None:
        _log_error(error)
        _flush_output()
        client.post_invocation_error(invoke_id, error)
    else:
        _flush_output()
        client.post_invocation_result(invoke_id, payload, content_type)


def _report_init_error(client, error):
    import logging  # configured by the import hook, as in AWS's runtime

    logging.warning(_LAMBDA_WARNING)
    _log_error(error)
    _flush_output()
    client.post_init_error(error)


def _become_instance(fd):
    """Spare mode (crates/runtime/src/spare.rs): this process was started ahead
    of time with a generic environment and the control channel on `fd`. Say we
    are loaded, wait for the instance we are to become, and become it: its
    complete environment in place of ours (the kernel's copy in
    /proc/self/environ too), its cwd, and what Python derived at start-up from
    the environment recomputed (time zone, pycache prefix, user site dir)."""
    os.write(fd, b"R")
    chunks = []
    while True:
        chunk = os.read(fd, 65536)  # until the server closes its end
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    if not chunks:
        sys.exit(0)  # dismissed
    spec = json.loads(b"".join(chunks))
    env = spec["env"]
    # What the interpreter itself added to its environment while starting (PEP 538
    # locale coercion sets LC_CTYPE) it would have added for the instance too: the
    # server rules out spares for functions that set LANG or LC_*.
    added = _startup_additions()
    os.environ.clear()
    os.environ.update(env)
    for key, value in added.items():
        os.environ.setdefault(key, value)
    _rewrite_proc_environ(env)
    os.chdir(spec["cwd"])
    time.tzset()
    sys.pycache_prefix = env.get("PYTHONPYCACHEPREFIX") or None
    site = sys.modules.get("site")
    if site is not None and getattr(site, "ENABLE_USER_SITE", False):
        site.USER_BASE = site.USER_SITE = None
        site.getusersitepackages()  # from the new HOME, as at start-up
    _read_environment()


def _startup_additions():
    """Variables in os.environ that the process was not started with."""
    try:
        with open("/proc/self/environ", "rb") as f:
            started = {e.partition(b"=")[0] for e in f.read().split(b"\0") if e}
    except OSError:
        return {}
    return {k: v for k, v in os.environ.items() if os.fsencode(k) not in started}


def _rewrite_proc_environ(env):
    """/proc/self/environ shows the environment a process was started with (the
    bytes between env_start and env_end of /proc/self/stat), whatever it did
    since. Write the instance's environment there, NUL-padded, so the process
    looks started with it. The spare's environment was padded so it fits (the
    server checked). Best effort: os.environ is right either way."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        start, end = int(fields[47]), int(fields[48])  # env_start, env_end
        block = b"".join(os.fsencode(k) + b"=" + os.fsencode(v) + b"\0" for k, v in env.items())
        if end <= start or len(block) > end - start:
            return
        mem = os.open("/proc/self/mem", os.O_RDWR)
        try:
            os.pwrite(mem, block + bytes(end - start - len(block)), start)
        finally:
            os.close(mem)
    except Exception:
        pass  # leave the kernel's copy as it was


def main():
    global _request_id, _tenant_id

    spare_fd = os.environ.get("_NIMBUS_SPARE")
    if spare_fd:
        _become_instance(int(spare_fd))

    # Output must reach the pipe as it is written; `python -u` does that, and
    # without -u line buffering comes close (posts flush what is left).
    for stream in (sys.stdout, sys.stderr):
        if not getattr(stream, "write_through", True):
            try:
                stream.reconfigure(line_buffering=True, write_through=True)
            except Exception:
                pass

    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # Replace this file's directory (sys.path[0] for a script) by the code root.
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == here:
        del sys.path[0]
    sys.path.insert(0, task_root)
    # The AWS SDK Nimbus provides (boto3, as Lambda's runtime ships it): right
    # after the code, so a bundled version wins but whatever the host
    # interpreter's site-packages hold does not (the pinned one is what functions
    # are promised). Read here, after a spare's claim, when the environment is known.
    # The function's layers (/opt/python/lib/python3.N/site-packages, /opt/python),
    # as Lambda puts them: after the code, before the runtime's SDK.
    at = 1
    for entry in (os.environ.get("NIMBUS_LAYER_PYTHON") or "").split(":"):
        if entry and entry not in sys.path:
            sys.path.insert(at, entry)
            at += 1
    sdk = os.environ.get("NIMBUS_SDK_PYTHON")
    if sdk and sdk not in sys.path:
        sys.path.insert(at, sdk)

    api = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not api:
        sys.stderr.write("AWS_LAMBDA_RUNTIME_API is not set\n")
        sys.exit(1)
    client = RuntimeClient(api)

    _install_logging()

    try:
        request_handler = _get_handler(os.environ.get("_HANDLER") or "")
    except Exception as e:
        if isinstance(e, FaultException):
            error = _make_error(e.msg, e.exception_type, e.trace)
        else:
            error = _error_from_exception(*sys.exc_info())
        _report_init_error(client, error)
        sys.exit(1)

    try:
        while True:
            headers, body = client.next_invocation()
            invoke_id = headers.get("lambda-runtime-aws-request-id") or ""
            _request_id = invoke_id
            _tenant_id = headers.get("lambda-runtime-aws-tenant-id")
            trace_id = headers.get("lambda-runtime-trace-id")
            if trace_id:
                os.environ["_X_AMZN_TRACE_ID"] = trace_id
            else:
                os.environ.pop("_X_AMZN_TRACE_ID", None)
            # Handler exceptions are reported inside; what gets out is ours.
            _handle_invocation(client, request_handler, invoke_id, headers, body)
    except (OSError, RuntimeAPIError) as e:
        # Nothing to report to: the server is gone or disowned this instance.
        _runtime_warning("lost the Runtime API: %s" % (e,))
        sys.exit(1)


if __name__ == "__main__":
    main()
