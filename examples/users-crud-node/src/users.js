'use strict';
/**
 * Users CRUD for API Gateway HTTP API events (payload 2.0):
 *
 *   GET    /users        200 {"users": [...]}
 *   POST   /users        201 + Location; 400 bad body; 409 email taken
 *   GET    /users/{id}   200, 404
 *   PUT    /users/{id}   200, 400, 404, 409
 *   DELETE /users/{id}   204, 404
 *
 * Each user is one JSON file under $USERS_DIR, shared by every instance; an email
 * is claimed by an exclusive create of emails/<email>, so two instances cannot
 * both take it.
 */
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const dir = () => process.env.USERS_DIR;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

function ensureDirs() {
  fs.mkdirSync(path.join(dir(), 'emails'), { recursive: true });
}

const json = (statusCode, body, headers = {}) => ({
  statusCode,
  headers: { 'content-type': 'application/json', ...headers },
  body: body === undefined ? '' : JSON.stringify(body),
});
const error = (status, message) => json(status, { message });

function userPath(id) {
  return /^[0-9a-f-]{36}$/.test(id) ? path.join(dir(), `${id}.json`) : null;
}

function readUser(id) {
  const p = userPath(id);
  if (!p) return null;
  try {
    return JSON.parse(fs.readFileSync(p, 'utf8'));
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
}

function writeAtomic(p, data) {
  const tmp = `${p}.${process.pid}.${crypto.randomUUID()}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, p);
}

const emailKey = (email) => path.join(dir(), 'emails', Buffer.from(email.toLowerCase()).toString('hex'));

function claimEmail(email, id) {
  try {
    fs.writeFileSync(emailKey(email), id, { flag: 'wx' });
    return true;
  } catch (e) {
    if (e.code === 'EEXIST') return fs.readFileSync(emailKey(email), 'utf8') === id;
    throw e;
  }
}

function parseBody(event) {
  let body = event.body || '';
  if (event.isBase64Encoded) body = Buffer.from(body, 'base64').toString('utf8');
  let data;
  try {
    data = JSON.parse(body);
  } catch {
    return [null, 'Body must be JSON'];
  }
  if (!data || typeof data !== 'object' || Array.isArray(data)) return [null, 'Body must be a JSON object'];
  const extra = Object.keys(data).filter((k) => k !== 'name' && k !== 'email');
  if (extra.length) return [null, `Unknown field ${extra[0]}`];
  if (typeof data.name !== 'string' || !data.name.trim()) return [null, 'name must be a non-empty string'];
  if (typeof data.email !== 'string' || !EMAIL.test(data.email)) return [null, 'email must be an email address'];
  return [{ name: data.name.trim(), email: data.email }, null];
}

exports.handler = async (event) => {
  ensureDirs();
  const id = (event.pathParameters || {}).id;
  switch (event.routeKey) {
    case 'GET /users': {
      const users = fs.readdirSync(dir())
        .filter((f) => f.endsWith('.json'))
        .map((f) => readUser(f.slice(0, -5)))
        .filter(Boolean)
        .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
      return json(200, { users });
    }
    case 'POST /users': {
      const [data, bad] = parseBody(event);
      if (bad) return error(400, bad);
      const user = { id: crypto.randomUUID(), ...data, createdAt: new Date().toISOString() };
      if (!claimEmail(user.email, user.id)) return error(409, 'Email already taken');
      writeAtomic(userPath(user.id), JSON.stringify(user));
      return json(201, user, { location: `/users/${user.id}` });
    }
    case 'GET /users/{id}': {
      const user = readUser(id);
      return user ? json(200, user) : error(404, 'User not found');
    }
    case 'PUT /users/{id}': {
      const user = readUser(id);
      if (!user) return error(404, 'User not found');
      const [data, bad] = parseBody(event);
      if (bad) return error(400, bad);
      if (data.email.toLowerCase() !== user.email.toLowerCase()) {
        if (!claimEmail(data.email, user.id)) return error(409, 'Email already taken');
        fs.rmSync(emailKey(user.email), { force: true });
      }
      const updated = { ...user, ...data };
      writeAtomic(userPath(id), JSON.stringify(updated));
      return json(200, updated);
    }
    case 'DELETE /users/{id}': {
      const user = readUser(id);
      if (!user) return error(404, 'User not found');
      fs.rmSync(userPath(id), { force: true });
      fs.rmSync(emailKey(user.email), { force: true });
      return json(204);
    }
    default:
      return error(404, `No route ${event.routeKey}`);
  }
};
