"""A users REST API behind the Nimbus gateway (API Gateway HTTP API, payload 2.0).

    GET    /users          list users (?limit=N, default 100)
    POST   /users          create  -> 201 + Location, 400 on a bad body
    GET    /users/{id}     read    -> 200, 404
    PUT    /users/{id}     replace -> 200, 400, 404
    DELETE /users/{id}     delete  -> 204, 404

State lives in SQLite at $USERS_DB: every instance of the function (there may be
several at once, and each has its own /tmp) opens the same file, so they all see
the same users. The handler runs unmodified on AWS Lambda behind API Gateway, with
USERS_DB pointing at shared storage such as EFS.
"""

import json
import os
import re
import sqlite3
import time

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_db = None


def db():
    global _db
    if _db is None:
        path = os.environ["USERS_DB"]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _db = sqlite3.connect(path, timeout=10, isolation_level=None)
        _db.execute("PRAGMA journal_mode=WAL")
        _db.execute(
            "CREATE TABLE IF NOT EXISTS users ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL)"
        )
    return _db


def respond(status, body=None, headers=None):
    out = {"statusCode": status, "headers": {"content-type": "application/json", **(headers or {})}}
    out["body"] = "" if body is None else json.dumps(body)
    return out


def error(status, message):
    return respond(status, {"message": message})


def row_to_user(row):
    return {"id": row[0], "name": row[1], "email": row[2], "createdAt": row[3]}


def parse_user(event):
    """The validated {name, email} of a request body, or an error response."""
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        import base64

        body = base64.b64decode(body).decode("utf-8", "replace")
    try:
        data = json.loads(body)
    except ValueError:
        return None, error(400, "Request body must be JSON")
    if not isinstance(data, dict):
        return None, error(400, "Request body must be a JSON object")
    name, email = data.get("name"), data.get("email")
    if not isinstance(name, str) or not name.strip():
        return None, error(400, "name is required")
    if not isinstance(email, str) or not EMAIL.match(email):
        return None, error(400, "email must be a valid address")
    unknown = sorted(set(data) - {"name", "email"})
    if unknown:
        return None, error(400, f"unknown field: {unknown[0]}")
    return {"name": name.strip(), "email": email.lower()}, None


def user_id(event):
    raw = (event.get("pathParameters") or {}).get("id", "")
    return int(raw) if raw.isdigit() else None


def get_user(uid):
    row = db().execute("SELECT id, name, email, created_at FROM users WHERE id = ?", (uid,)).fetchone()
    return row_to_user(row) if row else None


def list_users(event):
    q = event.get("queryStringParameters") or {}
    limit = q.get("limit", "100")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        return error(400, "limit must be between 1 and 1000")
    rows = db().execute("SELECT id, name, email, created_at FROM users ORDER BY id LIMIT ?", (int(limit),))
    return respond(200, {"users": [row_to_user(r) for r in rows]})


def create_user(event):
    user, err = parse_user(event)
    if err:
        return err
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        cur = db().execute(
            "INSERT INTO users(name, email, created_at) VALUES (?, ?, ?)", (user["name"], user["email"], now)
        )
    except sqlite3.IntegrityError:
        return error(409, f"a user with email {user['email']} exists")
    created = get_user(cur.lastrowid)
    return respond(201, created, {"location": f"/users/{created['id']}"})


def read_user(event):
    uid = user_id(event)
    user = get_user(uid) if uid is not None else None
    return respond(200, user) if user else error(404, "User not found")


def replace_user(event):
    uid = user_id(event)
    if uid is None or get_user(uid) is None:
        return error(404, "User not found")
    user, err = parse_user(event)
    if err:
        return err
    try:
        db().execute("UPDATE users SET name = ?, email = ? WHERE id = ?", (user["name"], user["email"], uid))
    except sqlite3.IntegrityError:
        return error(409, f"a user with email {user['email']} exists")
    return respond(200, get_user(uid))


def delete_user(event):
    uid = user_id(event)
    if uid is None or db().execute("DELETE FROM users WHERE id = ?", (uid,)).rowcount == 0:
        return error(404, "User not found")
    return {"statusCode": 204}


ROUTES = {
    "GET /users": list_users,
    "POST /users": create_user,
    "GET /users/{id}": read_user,
    "PUT /users/{id}": replace_user,
    "DELETE /users/{id}": delete_user,
}


def handler(event, context):
    route = ROUTES.get(event.get("routeKey"))
    if route is None:
        return error(404, "Not Found")
    return route(event)
