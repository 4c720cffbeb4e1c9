/**
 * Nimbus runtime bootstrap for Node.js functions.
 *
 * Started once per function instance as
 *
 *     node $LAMBDA_RUNTIME_DIR/node/bootstrap.js
 *
 * with cwd = $LAMBDA_TASK_ROOT. It loads the handler named by $_HANDLER
 * (`path/to/file.export`, CommonJS or ES module) and then serves invocations
 * from the Lambda Runtime API at http://$AWS_LAMBDA_RUNTIME_API until the
 * process is killed. Handler styles (async, callback, context.succeed/fail/
 * done), the context object, console output and error payloads behave as in
 * AWS Lambda's own Node.js runtime, so code moves between the two unmodified.
 *
 * It may also be started ahead of time as a spare, with a generic environment,
 * and told later which instance to become (becomeInstance below).
 *
 * Start-up cost matters (it is part of every cold start), so the Runtime API
 * client is a small HTTP/1.1 keep-alive client over one `net` socket rather
 * than the `http` module.
 */

'use strict';

const net = require('net');
const fs = require('fs');
const path = require('path');
const util = require('util');

const API_PREFIX = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const REQUEST_ID_SYMBOL = Symbol.for('aws.lambda.runtime.requestId');
const TENANT_ID_SYMBOL = Symbol.for('aws.lambda.runtime.tenantId');
const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');

// ---------------------------------------------------------------------------
// Errors the runtime reports (names as in AWS Lambda).
// ---------------------------------------------------------------------------

class ImportModuleError extends Error {}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {}
class MalformedStreamingHandler extends Error {}
class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
class NodeJsExit extends Error {
  constructor() {
    super(
      'The Lambda runtime client detected an unexpected Node.js exit code. ' +
        'This is most commonly caused by a Promise that was never settled. ' +
        'For more information, see https://nodejs.org/docs/latest/api/process.html#exit-codes',
    );
  }
}
for (const cls of [
  ImportModuleError,
  HandlerNotFound,
  MalformedHandlerName,
  UserCodeSyntaxError,
  MalformedStreamingHandler,
  UnhandledPromiseRejection,
  NodeJsExit,
]) {
  cls.prototype.name = `Runtime.${cls.name}`;
}

function looksLikeError(obj) {
  return (
    obj &&
    obj.name &&
    obj.message &&
    obj.stack &&
    typeof obj.name === 'string' &&
    typeof obj.message === 'string' &&
    typeof obj.stack === 'string'
  );
}

function intoError(err) {
  return err instanceof Error ? err : new Error(err);
}

/** The body posted to /error and /init/error. */
function toRapidResponse(error) {
  try {
    if (util.types.isNativeError(error) || looksLikeError(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: error.stack.split('\n'),
      };
    }
    return {
      errorType: typeof error,
      errorMessage: error.toString(),
      trace: [],
    };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

/** Error as printed on the log: tab, then JSON with the non-enumerable fields. */
function toFormatted(error) {
  try {
    return '\t' + JSON.stringify(error, (_k, v) => withEnumerableProperties(v));
  } catch (_) {
    return '\t' + JSON.stringify(toRapidResponse(error));
  }
}

function withEnumerableProperties(value) {
  if (!(value instanceof Error)) return value;
  const ret = Object.assign(
    { errorType: value.name, errorMessage: value.message, code: value.code },
    value,
  );
  if (typeof value.stack === 'string') ret.stack = value.stack.split('\n');
  return ret;
}

// ---------------------------------------------------------------------------
// Console: Lambda's line format, level filter and optional JSON format.
// ---------------------------------------------------------------------------

const LEVELS = {
  TRACE: { name: 'TRACE', priority: 1 },
  DEBUG: { name: 'DEBUG', priority: 2 },
  INFO: { name: 'INFO', priority: 3 },
  WARN: { name: 'WARN', priority: 4 },
  ERROR: { name: 'ERROR', priority: 5 },
  FATAL: { name: 'FATAL', priority: 6 },
};
// Read in main(): a spare only learns its environment when it is claimed.
let LOG_JSON = false;

function writeLine(line) {
  process.stdout.write(line.replace(/\n/g, '\r') + '\n');
}

function logText(level, message, ...params) {
  writeLine(
    `${new Date().toISOString()}\t${globalThis[REQUEST_ID_SYMBOL]}\t${level.name}\t${util.format(message, ...params)}`,
  );
}

function jsonErrorReplacer(_k, value) {
  if (!(value instanceof Error)) return value;
  return Object.assign(
    {
      errorType: value?.constructor?.name ?? 'UnknownError',
      errorMessage: value.message,
      stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
    },
    value,
  );
}

function logJson(level, ...messageParams) {
  const result = {
    timestamp: new Date().toISOString(),
    level: level.name,
    requestId: globalThis[REQUEST_ID_SYMBOL],
  };
  const tenantId = globalThis[TENANT_ID_SYMBOL];
  if (tenantId) result.tenantId = tenantId;
  let line;
  if (messageParams.length === 1) {
    result.message = messageParams[0];
    try {
      line = JSON.stringify(result, jsonErrorReplacer);
    } catch (_) {
      result.message = util.format(result.message);
      line = JSON.stringify(result);
    }
  } else {
    result.message = util.format(...messageParams);
    for (const param of messageParams) {
      if (param instanceof Error) {
        result.errorType = param?.constructor?.name ?? 'UnknownError';
        result.errorMessage = param.message;
        result.stackTrace = typeof param.stack === 'string' ? param.stack.split('\n') : [];
        break;
      }
    }
    line = JSON.stringify(result);
  }
  writeLine(line);
}

/** Log an error the way the runtime does for invoke and uncaught errors. */
let logError;

function patchConsole() {
  const log = LOG_JSON ? logJson : logText;
  const minimum = LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] || LEVELS.TRACE;
  const nop = () => {};
  const at = (level) =>
    level.priority >= minimum.priority ? (message, ...params) => log(level, message, ...params) : nop;
  console.trace = at(LEVELS.TRACE);
  console.debug = at(LEVELS.DEBUG);
  console.info = at(LEVELS.INFO);
  console.log = console.info;
  console.warn = at(LEVELS.WARN);
  console.error = at(LEVELS.ERROR);
  console.fatal = (message, ...params) => log(LEVELS.FATAL, message, ...params);
  logError = LOG_JSON
    ? (_msg, err) => console.error(intoError(err))
    : (msg, err) => console.error(msg, toFormatted(intoError(err)));
}

/**
 * process.stdout and process.stderr are created on first access, and creating
 * one on a pipe costs about a millisecond. Note which ones exist, so that
 * flushing output after an invocation that wrote nothing creates neither (it
 * was a measurable part of every cold start; docs/BENCHMARKS.md). The original
 * getter is put back on first access.
 */
const openedStreams = [];
for (const name of ['stdout', 'stderr']) {
  const desc = Object.getOwnPropertyDescriptor(process, name);
  if (!desc || typeof desc.get !== 'function' || !desc.configurable) {
    openedStreams.push(process[name]);
    continue;
  }
  Object.defineProperty(process, name, {
    configurable: true,
    enumerable: desc.enumerable,
    get() {
      Object.defineProperty(process, name, desc);
      const stream = desc.get.call(process);
      openedStreams.push(stream);
      return stream;
    },
  });
}

/** Resolves once stdout/stderr have handed everything written to the pipe. */
function flushOutput() {
  const pending = [];
  for (const stream of openedStreams) {
    if (stream.writableLength > 0 && !stream.destroyed) {
      pending.push(new Promise((resolve) => stream.write('', resolve)));
    }
  }
  return pending.length ? Promise.all(pending) : null;
}

// ---------------------------------------------------------------------------
// Runtime API client: HTTP/1.1 over one persistent loopback connection. The
// socket is unref'd while idle so an otherwise empty event loop still fires
// 'beforeExit' (callbackWaitsForEmptyEventLoop depends on it).
// ---------------------------------------------------------------------------

const CRLFCRLF = Buffer.from('\r\n\r\n');

class RuntimeClient {
  constructor(address) {
    const i = address.lastIndexOf(':');
    const port = Number(address.slice(i + 1));
    if (i <= 0 || !Number.isInteger(port)) {
      throw new Error(`AWS_LAMBDA_RUNTIME_API must be host:port, got '${address}'`);
    }
    let host = address.slice(0, i);
    if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
    this.host = host;
    this.port = port;
    this.authority = address;
    this.socket = null; // the kept-alive connection, when idle
    this.busy = false;
  }

  _connect() {
    const socket = net.connect({ host: this.host, port: this.port, noDelay: true });
    socket.on('error', () => {}); // reported through the per-request listeners
    socket.on('close', () => {
      if (this.socket === socket) this.socket = null;
    });
    return socket;
  }

  /**
   * One request at a time goes over the kept-alive connection. A request made
   * while it is busy (an error report while GET /next is long-polling) gets a
   * connection of its own.
   */
  async request(method, reqPath, headers, body) {
    if (this.busy) return this._attempt(method, reqPath, headers, body, false, true);
    this.busy = true;
    try {
      return await this._attempt(method, reqPath, headers, body, false, false);
    } finally {
      this.busy = false;
    }
  }

  _attempt(method, reqPath, headers, body, retried, oneShot) {
    return new Promise((resolve, reject) => {
      let socket = oneShot ? null : this.socket;
      const reused = socket !== null;
      if (!reused) {
        socket = this._connect();
        if (!oneShot) this.socket = socket;
      }
      socket.ref();

      let head = `${method} ${reqPath} HTTP/1.1\r\nHost: ${this.authority}\r\n`;
      for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
      if (body !== null) head += `Content-Length: ${body.length}\r\n`;
      head += '\r\n';

      let received = false;
      let pending = []; // header bytes not parsed yet
      let status = 0;
      let resHeaders = null;
      let bodyParts = [];
      let bodyLength = 0;
      let expected = -1; // Content-Length, or -1 = chunked / until close
      let chunked = false;

      const cleanup = () => {
        socket.removeListener('data', onData);
        socket.removeListener('close', onClose);
        socket.removeListener('error', onError);
      };
      const fail = (err) => {
        cleanup();
        if (this.socket === socket) this.socket = null;
        socket.destroy();
        if (!received && reused && !retried) {
          // The server had closed the idle kept-alive connection: retry once.
          this._attempt(method, reqPath, headers, body, true, oneShot).then(resolve, reject);
        } else {
          reject(err);
        }
      };
      const finish = (payload, keepAlive) => {
        cleanup();
        if (keepAlive && !oneShot) {
          socket.unref();
        } else {
          if (this.socket === socket) this.socket = null;
          socket.destroy();
        }
        resolve({ status, headers: resHeaders, body: payload });
      };
      const tryChunked = () => {
        const all = bodyParts.length === 1 ? bodyParts[0] : Buffer.concat(bodyParts);
        bodyParts = [all];
        const out = [];
        let pos = 0;
        for (;;) {
          const eol = all.indexOf('\r\n', pos);
          if (eol < 0) return;
          const size = parseInt(all.toString('latin1', pos, eol).split(';')[0], 16);
          if (size === 0) {
            if (all.indexOf(CRLFCRLF, eol - 2) < 0) return; // trailers not complete
            finish(Buffer.concat(out), keepAliveOf(resHeaders));
            return;
          }
          if (all.length < eol + 2 + size + 2) return;
          out.push(all.subarray(eol + 2, eol + 2 + size));
          pos = eol + 2 + size + 2;
        }
      };
      const onBody = (data) => {
        if (data.length) {
          bodyParts.push(data);
          bodyLength += data.length;
        }
        if (chunked) {
          tryChunked();
        } else if (expected >= 0 && bodyLength >= expected) {
          const all = bodyParts.length === 1 ? bodyParts[0] : Buffer.concat(bodyParts, bodyLength);
          finish(all.subarray(0, expected), keepAliveOf(resHeaders));
        }
      };
      const onData = (chunk) => {
        received = true;
        if (resHeaders !== null) {
          onBody(chunk);
          return;
        }
        pending.push(chunk);
        const buf = pending.length === 1 ? pending[0] : Buffer.concat(pending);
        pending = [buf];
        const end = buf.indexOf(CRLFCRLF);
        if (end < 0) return;
        const lines = buf.toString('latin1', 0, end).split('\r\n');
        status = parseInt(lines[0].split(' ')[1], 10);
        const rest = buf.subarray(end + 4);
        pending = [];
        if (status >= 100 && status < 200) {
          // interim response: parse what follows as a new response
          if (rest.length) onData(rest);
          return;
        }
        resHeaders = {};
        for (let k = 1; k < lines.length; k++) {
          const colon = lines[k].indexOf(':');
          if (colon > 0) {
            resHeaders[lines[k].slice(0, colon).trim().toLowerCase()] = lines[k].slice(colon + 1).trim();
          }
        }
        if (/chunked/i.test(resHeaders['transfer-encoding'] || '')) {
          chunked = true;
        } else if (resHeaders['content-length'] !== undefined) {
          expected = parseInt(resHeaders['content-length'], 10);
        } else if (status === 204 || status === 304 || method === 'HEAD') {
          expected = 0;
        }
        onBody(rest);
      };
      const onClose = () => {
        if (resHeaders !== null && expected < 0 && !chunked) {
          finish(Buffer.concat(bodyParts, bodyLength), false); // body delimited by close
        } else {
          fail(new Error('Runtime API closed the connection before a complete response'));
        }
      };
      const onError = (err) => fail(err);

      socket.on('data', onData);
      socket.on('close', onClose);
      socket.on('error', onError);
      if (body !== null && body.length) {
        socket.cork();
        socket.write(head, 'latin1');
        socket.write(body);
        socket.uncork();
      } else {
        socket.write(head, 'latin1');
      }
    });
  }

  async nextInvocation() {
    const res = await this.request('GET', `${API_PREFIX}/invocation/next`, {}, null);
    if (res.status !== 200) {
      throw new Error(`GET /invocation/next answered ${res.status}: ${res.body.toString().slice(0, 512)}`);
    }
    return res;
  }

  async _post(reqPath, bodyString, headers) {
    const body = Buffer.from(bodyString, 'utf8');
    const flushed = flushOutput();
    if (flushed) await flushed;
    const res = await this.request('POST', API_PREFIX + reqPath, headers, body);
    if (res.status < 200 || res.status >= 300) {
      // The server owns the outcome (e.g. 413 for an oversized payload).
      runtimeWarning(`POST ${reqPath} answered ${res.status}: ${res.body.toString().slice(0, 512)}`);
    }
  }

  /** Throws synchronously when the result cannot be serialised (as AWS does). */
  postInvocationResponse(result, id) {
    const bodyString = serializeResponse(result);
    return this._post(`/invocation/${encodeURIComponent(id)}/response`, bodyString, {
      'Content-Type': 'application/json',
    });
  }

  postInvocationError(error, id) {
    const response = toRapidResponse(error);
    return this._post(`/invocation/${encodeURIComponent(id)}/error`, serializeResponse(response), {
      'Content-Type': 'application/json',
      [ERROR_TYPE_HEADER]: headerValue(response.errorType),
    });
  }

  postInitError(error) {
    const response = toRapidResponse(error);
    return this._post('/init/error', serializeResponse(response), {
      'Content-Type': 'application/json',
      [ERROR_TYPE_HEADER]: headerValue(response.errorType),
    });
  }
}

function keepAliveOf(headers) {
  return !/close/i.test(headers.connection || '');
}

function serializeResponse(body) {
  try {
    return JSON.stringify(body === undefined ? null : body);
  } catch (_) {
    throw new Error('Unable to stringify response body');
  }
}

function headerValue(value) {
  // eslint-disable-next-line no-control-regex
  return String(value).replace(/[\r\n]/g, ' ').replace(/[^\x20-\x7e\x80-\xff\t]/g, '?');
}

function runtimeWarning(message) {
  try {
    process.stderr.write(`[nimbus-runtime] ${message}\n`);
  } catch (_) {
    /* nothing left to tell */
  }
}

// ---------------------------------------------------------------------------
// Loading the handler.
// ---------------------------------------------------------------------------

function hasTypeModule(folder) {
  // Nearest package.json decides; a node_modules folder or / ends the search.
  for (;;) {
    if (folder.endsWith('/node_modules')) return false;
    const pj = path.join(folder, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        const pkg = JSON.parse(fs.readFileSync(pj));
        if (pkg) return pkg.type === 'module';
      } catch (e) {
        console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, e);
        return false;
      }
    }
    if (folder === '/') return false;
    const parent = path.resolve(folder, '..');
    if (parent === folder) return false;
    folder = parent;
  }
}

async function importFile(file) {
  return import(require('url').pathToFileURL(file).href);
}

async function requireFile(file) {
  try {
    return require(file);
  } catch (e) {
    if (e && e.code === 'ERR_REQUIRE_ESM') return importFile(file);
    throw e;
  }
}

async function tryRequire(file) {
  return fs.existsSync(file) ? requireFile(file) : undefined;
}

async function tryImport(file) {
  return fs.existsSync(file) ? importFile(file) : undefined;
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);
  const extensionless = await tryRequire(base);
  if (extensionless) return extensionless;

  const typeModule = hasTypeModule(path.dirname(base));
  if (!typeModule) {
    const cjs = await tryRequire(base + '.js');
    if (cjs) return cjs;
  }
  const loaded =
    (typeModule && (await tryImport(base + '.js'))) ||
    (await tryImport(base + '.mjs')) ||
    (await tryRequire(base + '.cjs'));
  if (loaded) return loaded;

  // Not a file under the task root: resolve it like a package name.
  const resolved = require.resolve(moduleName, { paths: [appRoot, moduleRoot] });
  return requireFile(resolved);
}

function resolveExport(module, handlerPath) {
  const find = (root) => handlerPath.split('.').reduce((nested, key) => nested && nested[key], root);
  let handler = find(module);
  if (!handler && module && typeof module === 'object' && 'default' in module) {
    handler = find(module.default);
  }
  return handler;
}

async function loadHandler(appRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const moduleAndHandler = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(moduleAndHandler));
  const match = /^([^.]*)\.(.*)$/.exec(moduleAndHandler);
  if (!match) throw new MalformedHandlerName('Bad handler');
  const [, moduleName, handlerPath] = match;

  if (!/^(1|true)$/.test(process.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA || '')) {
    globalThis.awslambda = {
      streamifyResponse: (handler, options) => {
        handler[HANDLER_STREAMING] = 'response';
        if (typeof options?.highWaterMark === 'number') {
          handler[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark, 10);
        }
        return handler;
      },
    };
  }

  let module;
  try {
    module = await loadModule(appRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e && e.code === 'MODULE_NOT_FOUND') throw new ImportModuleError(e);
    throw e;
  }

  const handler = resolveExport(module, handlerPath);
  if (!handler) throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof handler !== 'function') throw new HandlerNotFound(`${fullHandler} is not a function`);
  if (handler[HANDLER_STREAMING]) {
    throw new MalformedStreamingHandler('Response streaming handlers are not supported by this runtime.');
  }
  return handler;
}

// ---------------------------------------------------------------------------
// The invocation loop.
// ---------------------------------------------------------------------------

let beforeExitListener = () => {};

function isPromise(obj) {
  return obj && obj.then && typeof obj.then === 'function';
}

function parseJsonHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

/**
 * The callback and the context's succeed/fail/done for one invocation. Only
 * the first of them to be called counts.
 */
function buildCallbackContext(client, id, scheduleNext) {
  const postError = (err, next) => {
    logError('Invoke Error', err);
    client.postInvocationError(err, id).then(next, fatal);
  };

  let completed = false;
  const complete = (result, next) => {
    if (completed) {
      console.error(
        'Invocation has already been reported as done. Cannot call complete more than once per invocation.',
      );
      return;
    }
    completed = true;
    client.postInvocationResponse(result, id).then(next, fatal);
  };

  let waitForEmptyEventLoop = true;

  const callback = (err, result) => {
    beforeExitListener = () => {};
    if (err !== undefined && err !== null) {
      postError(err, scheduleNext);
    } else if (!waitForEmptyEventLoop) {
      complete(result, scheduleNext);
    } else {
      beforeExitListener = () => setImmediate(() => complete(result, scheduleNext));
    }
  };
  const done = (err, result) => {
    beforeExitListener = () => {};
    if (err !== undefined && err !== null) {
      postError(err, scheduleNext);
    } else {
      complete(result, scheduleNext);
    }
  };

  let finished = false;
  const once =
    (fn) =>
    (...args) => {
      if (!finished) {
        fn(...args);
        finished = true;
      }
    };

  const context = {
    get callbackWaitsForEmptyEventLoop() {
      return waitForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitForEmptyEventLoop = value;
    },
    succeed: once((result) => done(null, result)),
    fail: once((err) => (err === undefined || err === null ? done('handled') : done(err, null))),
    done: once(done),
  };
  const markCompleted = () => {
    completed = true;
  };
  return [once(callback), context, markCompleted];
}

/**
 * Spare mode (crates/runtime/src/spare.rs): this process was started ahead of
 * time with a generic environment and the control channel on fd
 * $_NIMBUS_SPARE. Say we are loaded, wait for the instance we are to become,
 * and become it: its complete environment in place of ours (the kernel's copy
 * in /proc/self/environ too), its cwd, and what Node derived at start-up from
 * the environment recomputed (module search paths, time zone).
 */
function becomeInstance(fd) {
  fs.writeSync(fd, 'R');
  const text = fs.readFileSync(fd, 'utf8'); // until the server closes its end
  fs.closeSync(fd);
  if (!text) process.exit(0); // dismissed
  const spec = JSON.parse(text);
  for (const key of Object.keys(process.env)) delete process.env[key];
  for (const [key, value] of Object.entries(spec.env)) process.env[key] = value;
  rewriteProcEnviron(spec.env);
  process.chdir(spec.cwd);
  require('module')._initPaths(); // from HOME and NODE_PATH, as at start-up
  // Assigning TZ resets V8's time-zone cache, now that the new value is in place.
  if (spec.env.TZ !== undefined) process.env.TZ = spec.env.TZ;
}

/**
 * /proc/self/environ shows the environment a process was started with (the
 * bytes between env_start and env_end of /proc/self/stat), whatever it did
 * since. Write the instance's environment there, NUL-padded, so the process
 * looks started with it. The spare's environment was padded so it fits (the
 * server checked). Best effort: process.env is right either way.
 */
function rewriteProcEnviron(env) {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'latin1');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = Number(fields[47]); // field 50: env_start
    const end = Number(fields[48]); // field 51: env_end
    const block = Buffer.from(
      Object.entries(env)
        .map(([k, v]) => `${k}=${v}\0`)
        .join(''),
    );
    if (!(end > start) || block.length > end - start) return;
    const buf = Buffer.alloc(end - start);
    block.copy(buf);
    const mem = fs.openSync('/proc/self/mem', 'r+');
    try {
      fs.writeSync(mem, buf, 0, buf.length, start);
    } finally {
      fs.closeSync(mem);
    }
  } catch (_) {
    // Leave the kernel's copy as it was.
  }
}

function main() {
  if (process.env._NIMBUS_SPARE) becomeInstance(Number(process.env._NIMBUS_SPARE));
  LOG_JSON = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
  patchConsole();

  const address = process.env.AWS_LAMBDA_RUNTIME_API;
  if (!address) {
    process.stderr.write('AWS_LAMBDA_RUNTIME_API is not set\n');
    process.exit(1);
  }
  const client = new RuntimeClient(address);
  const appRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();

  // Until the first invocation, fatal errors are init errors.
  const errorCallbacks = {
    uncaughtException: (error) => exitAfter(client.postInitError(error), 129),
    unhandledRejection: (error) => exitAfter(client.postInitError(error), 128),
  };
  fatal = (err) => {
    console.log(`Unexpected Top Level Error: ${err.toString()}`);
    errorCallbacks.uncaughtException(err);
  };
  process.on('uncaughtException', (error) => {
    logError('Uncaught Exception', error);
    errorCallbacks.uncaughtException(error);
  });
  process.on('unhandledRejection', (reason, promise) => {
    const error = new UnhandledPromiseRejection(reason, promise);
    logError('Unhandled Promise Rejection', error);
    errorCallbacks.unhandledRejection(error);
  });
  process.on('beforeExit', () => beforeExitListener());

  let handler;
  let isAsync = false;

  const scheduleIteration = () => {
    setImmediate(() => handleOnce().catch(fatal));
  };

  const handleOnce = async () => {
    const { headers, body } = await client.nextInvocation();
    const id = headers['lambda-runtime-aws-request-id'];
    if (!id) throw new Error('invocation id is missing or invalid');
    globalThis[REQUEST_ID_SYMBOL] = id;
    globalThis[TENANT_ID_SYMBOL] = headers['lambda-runtime-aws-tenant-id'];

    const [callback, callbackContext, markCompleted] = buildCallbackContext(client, id, scheduleIteration);
    try {
      errorCallbacks.uncaughtException = (error) => exitAfter(client.postInvocationError(error, id), 129);
      errorCallbacks.unhandledRejection = (error) => exitAfter(client.postInvocationError(error, id), 128);
      // If the event loop empties before the handler reports a result: an
      // async handler left a promise unsettled; any other handler gets null.
      beforeExitListener = () => {
        markCompleted();
        if (isAsync) {
          const error = new NodeJsExit();
          logError('Invoke Error', error);
          client.postInvocationError(error, id).then(scheduleIteration, fatal);
        } else {
          client.postInvocationResponse(null, id).then(scheduleIteration, fatal);
        }
      };

      const trace = headers['lambda-runtime-trace-id'];
      if (trace) process.env._X_AMZN_TRACE_ID = trace;
      else delete process.env._X_AMZN_TRACE_ID;
      const deadline = Number(headers['lambda-runtime-deadline-ms']);
      const env = process.env;
      const context = Object.assign(callbackContext, {
        functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
        functionName: env.AWS_LAMBDA_FUNCTION_NAME,
        memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
        logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
        logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
        clientContext: parseJsonHeader(headers['lambda-runtime-client-context'], 'ClientContext'),
        identity: parseJsonHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
        invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
        awsRequestId: id,
        tenantId: headers['lambda-runtime-aws-tenant-id'],
        getRemainingTimeInMillis: () => deadline - Date.now(),
      });

      const result = handler(JSON.parse(body.toString('utf8')), context, callback);
      if (isPromise(result)) {
        result.then(callbackContext.succeed, callbackContext.fail).catch(callbackContext.fail);
      }
    } catch (err) {
      callback(err);
    }
  };

  loadHandler(appRoot, process.env._HANDLER || '').then(
    (loaded) => {
      handler = loaded;
      isAsync = handler.constructor?.name === 'AsyncFunction';
      scheduleIteration();
    },
    (err) => {
      logError('Uncaught Exception', err);
      errorCallbacks.uncaughtException(err);
    },
  );
}

let fatal = (err) => {
  throw err;
};

let exiting = false;
function exitAfter(posted, code) {
  if (exiting) return;
  exiting = true;
  const exit = () => process.exit(code);
  Promise.resolve(posted).then(exit, exit);
}

main();
