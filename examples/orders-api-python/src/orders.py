"""Orders API (API Gateway HTTP API events, payload 2.0) and its nightly cleanup.

    POST /orders              create  {"item": str, "quantity": int > 0} -> 201
    GET  /orders              list    -> 200 {"orders": [...]}
    GET  /orders/{id}         read    -> 200, 404
    POST /orders/{id}/cancel  cancel  -> 200, 404, 409 when already cancelled

`handler` also receives the warm-up schedule's event `{"source": "warmup"}` and
returns at once. `cleanup` receives EventBridge's scheduled event and deletes the
orders cancelled more than CLEANUP_AFTER_S seconds ago (default one day).

State is SQLite at $ORDERS_DB, shared by every instance of both functions.
"""

import base64
import json
import os
import sqlite3
import time

_db = None


def db():
    global _db
    if _db is None:
        path = os.environ["ORDERS_DB"]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _db = sqlite3.connect(path, timeout=10, isolation_level=None)
        _db.execute("PRAGMA journal_mode=WAL")
        _db.execute(
            "CREATE TABLE IF NOT EXISTS orders ("
            " id INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL,"
            " quantity INTEGER NOT NULL, status TEXT NOT NULL,"
            " created_at REAL NOT NULL, cancelled_at REAL)"
        )
    return _db


def respond(status, body):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


def row(r):
    return {"id": r[0], "item": r[1], "quantity": r[2], "status": r[3], "stage": os.environ.get("STAGE")}


def get_order(order_id):
    if not order_id.isdigit():
        return None
    r = db().execute(
        "SELECT id, item, quantity, status FROM orders WHERE id = ?", (int(order_id),)
    ).fetchone()
    return r and row(r)


def handler(event, context):
    if event.get("source") == "warmup":
        return {"warmup": True}
    route = event.get("routeKey", "")
    params = event.get("pathParameters") or {}
    if route == "POST /orders":
        body = event.get("body") or ""
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", "replace")
        try:
            data = json.loads(body)
        except ValueError:
            return respond(400, {"message": "Body must be JSON"})
        if not isinstance(data, dict) or not isinstance(data.get("item"), str) or not data["item"]:
            return respond(400, {"message": "item must be a non-empty string"})
        q = data.get("quantity", 1)
        if not isinstance(q, int) or isinstance(q, bool) or q < 1:
            return respond(400, {"message": "quantity must be a positive integer"})
        cur = db().execute(
            "INSERT INTO orders (item, quantity, status, created_at) VALUES (?, ?, 'open', ?)",
            (data["item"], q, time.time()),
        )
        return respond(201, get_order(str(cur.lastrowid)))
    if route == "GET /orders":
        rows = db().execute("SELECT id, item, quantity, status FROM orders ORDER BY id").fetchall()
        return respond(200, {"orders": [row(r) for r in rows]})
    if route == "GET /orders/{id}":
        order = get_order(params.get("id", ""))
        return respond(200, order) if order else respond(404, {"message": "Order not found"})
    if route == "POST /orders/{id}/cancel":
        order = get_order(params.get("id", ""))
        if not order:
            return respond(404, {"message": "Order not found"})
        if order["status"] == "cancelled":
            return respond(409, {"message": "Order already cancelled"})
        db().execute(
            "UPDATE orders SET status = 'cancelled', cancelled_at = ? WHERE id = ?",
            (time.time(), order["id"]),
        )
        return respond(200, get_order(str(order["id"])))
    return respond(404, {"message": f"No route {route}"})


def cleanup(event, context):
    """EventBridge's scheduled event in, the number of deleted orders out."""
    if event.get("detail-type") != "Scheduled Event":
        return {"deleted": 0, "skipped": "not a scheduled event"}
    cutoff = time.time() - float(os.environ.get("CLEANUP_AFTER_S", 86400))
    cur = db().execute(
        "DELETE FROM orders WHERE status = 'cancelled' AND cancelled_at <= ?", (cutoff,)
    )
    print(f"cleanup at {event.get('time')}: deleted {cur.rowcount} cancelled orders")
    return {"deleted": cur.rowcount}
