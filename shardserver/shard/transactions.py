"""Transaction state of one shard: item intents (two-phase commit participant) and decisions (coordinator).

Owns, per shard:
* ``locks``: (table id, storage key) -> the ``Intent`` of a prepared (or
  preparing) TransactWriteItems, or a ``ReadLock`` of a running
  TransactGetItems.  Single-item writes consult it (``check_write``) right
  before they write; it is empty, and the check costs one truthiness test,
  whenever no transaction touches this shard.
* ``intents``: transaction id -> Intent, with the new item images computed at
  PREPARE, so COMMIT only applies them and can never fail half way.
* ``decisions``: transactions this shard coordinated and decided to commit,
  kept until every participant acknowledged its COMMIT.
* ``tokens``: ClientRequestToken idempotency entries of the tokens this shard owns.

Durability goes through the commit log (``storage.append_record``): PREPARE,
RESOLVED, DECISION, FORGET and TOKEN records, replayed before the shard
serves (``install`` must run before ``storage.open()``).

The recovery rule (presumed abort, the coordinator decides): a participant
never decides alone.  An intent that outlives ``RESOLVE_AFTER`` seconds (or
that was replayed after a restart) asks its coordinator for the outcome and
asks again until the coordinator answers.  The coordinator answers "commit"
only for a transaction whose DECISION record it wrote (and fsynced) before
sending any COMMIT; a transaction it is still preparing is "pending"; any
other one, including every transaction that was in flight when the
coordinator died, is "abort".  So a prepared transaction is applied on all
its shards or on none; a coordinator that is down only delays the answer.

This module must never apply a write that was not prepared, never drop an
intent without a RESOLVED record, and never await between its lock checks
and the writes they protect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import orjson

from shardserver.errors import ConditionalCheckFailedException, DynamoDBError, TransactionConflictException

log = logging.getLogger("shardserver.transactions")

# Commit-log record kinds (16..255 belong to callers of append_record; nobody else uses these).
# Every payload is one orjson object:
#   PREPARE   {"tx": id, "c": coordinator shard, "w": [[table id, storage key hex, "put"|"delete"|"check",
#              new item or null], ...]}        participant: a prepared intent (may be logged again)
#   RESOLVED  {"tx": id}                       participant: the intent was applied or dropped
#   DECISION  {"tx": id, "p": [shards], "k": [token, digest, token shard] or absent}
#                                              coordinator: committed (fsynced before any COMMIT is sent)
#   FORGET    {"tx": id}                       coordinator: every participant acknowledged (and the
#                                              token shard heard "done", for a request with a token)
#   TOKEN     {"t": token, "h": request digest, "e": expiry, epoch seconds, "s": state}
#                                              token shard: state "d" done (or no "s"), "p" claimed by
#                                              "x": transaction id of "c": coordinator shard, "f" freed
KIND_PREPARE = 40
KIND_RESOLVED = 41
KIND_DECISION = 42
KIND_FORGET = 43
KIND_TOKEN = 44
KINDS = frozenset((KIND_PREPARE, KIND_RESOLVED, KIND_DECISION, KIND_FORGET, KIND_TOKEN))

RESOLVE_AFTER = 1.0          # seconds before a participant asks the coordinator about an intent
SWEEP_INTERVAL = 0.2
READ_LOCK_LIFETIME = 30.0    # a TransactGetItems whose coordinator vanished leaves no lock longer
TOKEN_LIFETIME = 600.0       # ClientRequestToken idempotency window (DynamoDB: 10 minutes)

CONFLICT_MESSAGE = "Transaction is ongoing for the item"
CONFLICT_REASON = {"Code": "TransactionConflict", "Message": CONFLICT_MESSAGE}
NONE_REASON = {"Code": "None"}

_UNKNOWN = object()          # old image not known (replayed intent): read it at commit


class Intent:
    """One transaction's prepared writes on this shard."""

    __slots__ = ("tx", "coordinator", "keys", "writes", "created", "segment", "resolving", "replayed")

    def __init__(self, tx: str, coordinator: int):
        self.tx = tx
        self.coordinator = coordinator
        self.keys: list[tuple[str, bytes]] = []
        # (table id, key, op "put"/"delete"/"check", new item dict or None, old item or _UNKNOWN)
        self.writes: list[tuple] = []
        self.created = time.monotonic()
        self.segment = 0
        self.resolving: asyncio.Future | None = None
        self.replayed = False


class ReadLock:
    """Items a TransactGetItems is reading; any write breaks it (the reader then cancels)."""

    __slots__ = ("holders", "broken", "created")

    def __init__(self):
        self.holders = 0
        self.broken = False
        self.created = time.monotonic()


class Decision:
    __slots__ = ("tx", "participants", "token", "segment", "pushing", "created")

    def __init__(self, tx: str, participants: set[int], token: list | None = None):
        self.tx = tx
        self.participants = participants     # shards that have not acknowledged COMMIT yet
        # [ClientRequestToken, digest, token shard] until the token shard heard "done": the
        # decision is not forgotten before, so a retry asking about tx never hears "abort".
        self.token = token
        self.segment = 0
        self.pushing = False
        self.created = time.monotonic()


def check_write(svc, table_id: str, key: bytes) -> None:
    """Called by single-item writes right before they write (nothing awaited in between)."""
    table = svc.__dict__.get("transactions")
    if table is not None and table.locks:
        entry = table.locks.get((table_id, key))
        if entry is not None:
            table.single_write(entry, (table_id, key))


def _token_record(token: str, entry: list) -> bytes:
    """A KIND_TOKEN record of a token's entry: its outcome ("d"), or its claim ("p")."""
    digest, state, expires, tx, coordinator = entry[:5]
    if state == "done":
        return orjson.dumps({"t": token, "h": digest, "e": expires})
    return orjson.dumps({"t": token, "h": digest, "e": expires, "s": "p", "x": tx, "c": coordinator})


def _decision_record(decision: Decision) -> bytes:
    record = {"tx": decision.tx, "p": sorted(decision.participants)}
    if decision.token is not None:
        record["k"] = decision.token
    return orjson.dumps(record)


class TransactionTable:
    def __init__(self, storage, shard_id: int = 0):
        self.storage = storage
        self.shard_id = shard_id
        self.locks: dict[tuple[str, bytes], Intent | ReadLock] = {}
        self.intents: dict[str, Intent] = {}
        self.decisions: dict[str, Decision] = {}
        self.preparing: set[str] = set()          # coordinated here, not decided yet
        # token -> [digest, state, expires (wall clock), transaction id, coordinator shard,
        # segment] (id and coordinator for an entry in progress, so a later claim can ask what
        # became of it; segment: where it was last logged, None if it was not)
        self.tokens: dict[str, list] = {}
        self.read_holds: dict[str, tuple] = {}    # TransactGetItems token -> (since, [(lock key, ReadLock, index)])
        self.svc = None
        self._counter = 0
        self._nonce = os.urandom(6).hex()
        self._task: asyncio.Task | None = None
        self._resolvers: set[asyncio.Task] = set()
        self.conflicts_total = 0
        self.commits_total = 0
        self.aborts_total = 0
        previous = storage.replay_hook
        # Chain, so other users of the hook keep theirs (whoever installs first).
        storage.replay_hook = lambda kind, payload: (
            self._replay(kind, payload) if kind in KINDS else previous(kind, payload) if previous else None)

    # ------------------------------------------------------------ life cycle

    def start(self, svc) -> None:
        self.svc = svc
        self.shard_id = svc.shard_id
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def stop(self) -> None:
        for task in [self._task, *self._resolvers]:
            if task is not None and not task.done():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        self._task = None

    def new_id(self) -> str:
        self._counter += 1
        return f"{self.shard_id}.{self._nonce}.{self._counter}"

    # ------------------------------------------------------------ single-item writes

    def single_write(self, entry, lock_key) -> None:
        if entry.__class__ is Intent:
            self.conflicts_total += 1
            raise TransactionConflictException(CONFLICT_MESSAGE)
        # A read lock: the write wins, the TransactGetItems reading this item will cancel.
        entry.broken = True
        del self.locks[lock_key]

    # ------------------------------------------------------------ participant: prepare

    async def prepare(self, svc, tx: str, coordinator: int, actions: list) -> tuple[dict, dict]:
        """Validates, locks, reads and checks ``actions``; durable intent when all pass.

        ``actions`` are objects with index, kind, schema, key, prepared, item and
        key_av (see executor/transactions.py).  Returns ({index: reason} of failed
        actions, {index: [table units, {GSI: units}, {LSI: units}]}); no intent stays behind on failure.
        """
        from shardserver.shard import expressions as ex
        from shardserver.shard import indexes, values
        from shardserver.shard.executor import capacity
        from shardserver.shard.keys import EmptyKeyValue
        intent = Intent(tx, coordinator)
        reasons: dict[int, dict] = {}
        locks = self.locks
        for action in actions:
            lock_key = (action.schema.table_id, action.key)
            entry = locks.get(lock_key)
            if entry is not None:
                if entry.__class__ is Intent:
                    reasons[action.index] = CONFLICT_REASON
                    continue
                entry.broken = True
            locks[lock_key] = intent
            intent.keys.append(lock_key)
        units: dict[int, list] = {}
        # From here on the claimed items cannot change under us: reads see their final values.
        try:
            for action in actions:
                if action.index in reasons:
                    continue
                schema = action.schema
                stored = await self.storage.get(schema.table_id, action.key)
                old = orjson.loads(stored) if stored is not None else None
                try:
                    action.prepared.check_condition(old)
                    new = None
                    if action.kind == "Put":
                        op, new = "put", action.item
                    elif action.kind == "Update" and old is None and action.prepared.only_removes():
                        op = "check"        # an absent item stays absent (see UpdateItem)
                    elif action.kind == "Update":
                        base = old if old is not None else {n: action.key_av[n] for n in schema.key_names}
                        key_names = set(schema.key_names)
                        if action.prepared.update is not None:
                            new, _ = ex.apply_update(action.prepared.update, base, None, key_names,
                                                     len(stored) if stored is not None else None)
                        else:
                            new = base
                        op = "put"
                    elif action.kind == "Delete":
                        op = "delete" if old is not None else "check"
                    else:
                        op = "check"
                    if new is not None and (schema.local_indexes or schema.global_indexes):
                        indexes.check_item(schema, new, action.kind == "Update")
                except ConditionalCheckFailedException as failure:
                    reason = {"Code": "ConditionalCheckFailed", "Message": failure.message}
                    if failure.item is not None:
                        reason["Item"] = failure.item
                    reasons[action.index] = reason
                    continue
                except EmptyKeyValue as error:
                    # Input validation: the coordinator refuses the whole request with it ("T").
                    reasons[action.index] = {"Code": "ValidationError", "Message": error.message, "T": 1}
                    continue
                except DynamoDBError as error:
                    reasons[action.index] = {"Code": "ValidationError", "Message": error.message}
                    continue
                if op == "check":   # a condition check (or a delete of nothing) reads the item only
                    units[action.index] = [capacity.write_units(values.item_size(old) if old else 0), {}, {}]
                else:               # the table's units and each index's (capacity.write_units_of)
                    units[action.index] = list(capacity.write_units_of(schema, old, new))
                intent.writes.append((schema.table_id, action.key, op, new, old))
        except BaseException:
            self._release(intent)
            raise
        if reasons:
            self._release(intent)
            return reasons, units
        self.intents[tx] = intent
        intent.segment = self._log(KIND_PREPARE, self._prepare_record(intent))
        await self.storage.sync()
        return {}, units

    @staticmethod
    def _prepare_record(intent: Intent) -> bytes:
        return orjson.dumps({"tx": intent.tx, "c": intent.coordinator,
                             "w": [[t, k.hex(), op, new] for t, k, op, new, _ in intent.writes]})

    def _release(self, intent: Intent) -> None:
        locks = self.locks
        for lock_key in intent.keys:
            if locks.get(lock_key) is intent:
                del locks[lock_key]

    def _log(self, kind: int, payload: bytes) -> int:
        return self.storage.append_record(kind, payload)[0]

    # ------------------------------------------------------------ participant: commit / abort

    async def commit(self, svc, tx: str) -> None:
        """Applies a prepared transaction's writes (idempotent: an unknown tx is already resolved)."""
        intent = self.intents.get(tx)
        if intent is None:
            return
        if intent.resolving is not None:
            await asyncio.shield(intent.resolving)
            return
        intent.resolving = asyncio.get_running_loop().create_future()
        try:
            storage = self.storage
            olds = []
            for table_id, key, op, new, old in intent.writes:
                if old is _UNKNOWN and op != "check" and storage.has_table(table_id):
                    stored = await storage.get(table_id, key)
                    old = orjson.loads(stored) if stored is not None else None
                olds.append(old)
            # No await from here to the RESOLVED record: the writes land together.
            schemas = {s.table_id: s for s in svc.catalog.tables.values()}
            for (table_id, key, op, new, _), old in zip(intent.writes, olds):
                schema = schemas.get(table_id)
                if op == "check" or schema is None or not storage.has_table(table_id):
                    continue          # a table dropped meanwhile took the item with it
                try:
                    if op == "put":
                        storage.put(table_id, key, orjson.dumps(new))
                        svc.after_write(schema, key, old, new)
                    elif old is not None:
                        storage.delete(table_id, key)
                        svc.after_write(schema, key, old, None)
                except DynamoDBError as error:
                    # Checked at prepare; only a schema change in between can get here.
                    log.error("transaction %s: index maintenance refused a write: %s", tx, error.message)
            self._finish(intent)
            self.commits_total += 1
            await storage.sync()
        finally:
            if not intent.resolving.done():
                intent.resolving.set_result(None)

    def abort(self, tx: str) -> None:
        intent = self.intents.get(tx)
        if intent is None or intent.resolving is not None:
            return
        self._finish(intent)
        self.aborts_total += 1

    def _finish(self, intent: Intent) -> None:
        self.intents.pop(intent.tx, None)
        self._release(intent)
        self._log(KIND_RESOLVED, orjson.dumps({"tx": intent.tx}))

    # ------------------------------------------------------------ coordinator

    def status(self, tx: str) -> bytes:
        """The outcome a participant asks for: b"c" commit, b"p" still preparing, b"a" abort."""
        if tx in self.decisions:
            return b"c"
        if tx in self.preparing:
            return b"p"
        return b"a"

    async def decide_commit(self, tx: str, participants: set[int], token: list | None = None) -> Decision:
        """Makes the commit decision durable before any participant hears it.

        token: [ClientRequestToken, digest, token shard] of a request that gave one."""
        self.preparing.discard(tx)
        decision = self.decisions[tx] = Decision(tx, set(participants), token)
        decision.segment = self._log(KIND_DECISION, _decision_record(decision))
        await self.storage.sync()
        return decision

    def acknowledged(self, decision: Decision, shard: int) -> None:
        decision.participants.discard(shard)
        self._forget_if_done(decision)

    def token_told(self, decision: Decision) -> None:
        """The token shard heard "done" for the decision's request."""
        decision.token = None
        self._forget_if_done(decision)

    def _forget_if_done(self, decision: Decision) -> None:
        if not decision.participants and decision.token is None and \
                self.decisions.pop(decision.tx, None) is not None:
            self._log(KIND_FORGET, orjson.dumps({"tx": decision.tx}))

    async def push_commit(self, svc, decision: Decision, send, tell=None) -> None:
        """Sends COMMIT to every participant not yet acknowledged; ``send(shard, tx)`` may raise.

        ``tell(decision)``, which may raise too, tells the token shard "done" (the sweep's
        retry, for a decision whose token shard did not hear it from the request)."""
        if decision.pushing:
            return
        decision.pushing = True
        try:
            shards = sorted(decision.participants)
            results = await asyncio.gather(*(send(s, decision.tx) for s in shards), return_exceptions=True)
            for shard, result in zip(shards, results):
                if isinstance(result, BaseException):
                    log.info("transaction %s: commit not yet delivered to shard %d (%s); will retry",
                             decision.tx, shard, result)
                else:
                    self.acknowledged(decision, shard)
            if tell is not None and decision.token is not None:
                try:
                    await tell(decision)
                except DynamoDBError as error:
                    log.info("transaction %s: token shard not reachable (%s); will retry", decision.tx,
                             error.message)
                else:
                    self.token_told(decision)
        finally:
            decision.pushing = False

    # ------------------------------------------------------------ TransactGetItems read locks

    def lock_for_read(self, lock_keys: list[tuple[str, bytes]]) -> tuple[list[int], list]:
        """Read-locks every key without an intent; (positions with an intent, held locks)."""
        conflicts = []
        held = []
        for position, lock_key in enumerate(lock_keys):
            entry = self.locks.get(lock_key)
            if entry is not None and entry.__class__ is Intent:
                conflicts.append(position)
                continue
            if entry is None:
                entry = self.locks[lock_key] = ReadLock()
            entry.holders += 1
            held.append((lock_key, entry))
        return conflicts, held

    def unlock_read(self, held: list) -> list[int]:
        """Releases read locks; positions (in ``held``) of locks a write broke meanwhile."""
        broken = []
        for position, (lock_key, entry) in enumerate(held):
            if entry.broken:
                broken.append(position)
            entry.holders -= 1
            if entry.holders <= 0 and self.locks.get(lock_key) is entry:
                del self.locks[lock_key]
        return broken

    def hold_reads(self, token: str, holds: list) -> None:
        """Keeps a multi-shard TransactGetItems' read locks until its second round."""
        self.read_holds[token] = (time.monotonic(), holds)

    def take_reads(self, token: str) -> list | None:
        entry = self.read_holds.pop(token, None)
        return entry[1] if entry is not None else None

    # ------------------------------------------------------------ idempotency tokens

    def claim_token(self, token: str, digest: str, tx: str | None = None, coordinator: int | None = None) -> str:
        """'new' (now in progress, run by ``tx`` of ``coordinator``), 'done', 'progress' or 'mismatch'."""
        entry = self.tokens.get(token)
        now = time.time()
        if entry is not None and entry[2] < now:
            entry = None
        if entry is None:
            expires = now + TOKEN_LIFETIME
            entry = self.tokens[token] = [digest, "progress", expires, tx, coordinator, None]
            if tx is not None:
                # Logged, so that after a restart a retry asks tx's coordinator whether
                # it committed instead of running the request a second time.
                entry[5] = self._log(KIND_TOKEN, _token_record(token, entry))
            return "new"
        if entry[0] != digest:
            return "mismatch"
        return entry[1]

    def token_holder(self, token: str) -> tuple[str, int] | None:
        """(transaction id, coordinator) of a token in progress, if known."""
        entry = self.tokens.get(token)
        if entry is None or entry[1] != "progress" or entry[3] is None:
            return None
        return entry[3], entry[4]

    def settle_token(self, token: str, digest: str, held_by: str, outcome: bytes,
                     tx: str | None, coordinator: int) -> str:
        """A claim of a token in progress, once ``held_by``'s coordinator answered ``outcome``.

        b"c": committed, so the claim is a retry of an applied request (``done``).
        b"a": never decided, and never will be (its coordinator restarted, or
        aborted it): the token is free again and ``tx`` now holds it.  Its
        coordinator tells this shard ``done`` before it may forget a decision,
        so "abort" never hides a commit.  b"p": still running.
        """
        entry = self.tokens.get(token)
        if entry is None or entry[1] != "progress" or entry[3] != held_by:
            return self.claim_token(token, digest, tx, coordinator)     # it changed meanwhile
        if outcome == b"c":
            self.finish_token(token, digest, True)
            return "done"
        if outcome == b"a":
            del self.tokens[token]
            return self.claim_token(token, digest, tx, coordinator)
        return "progress"

    def finish_token(self, token: str, digest: str, succeeded: bool, tx: str | None = None) -> None:
        entry = self.tokens.get(token)
        if tx is not None and entry is not None and entry[1] == "progress" and entry[3] not in (None, tx):
            return      # a later claim holds it now (this transaction was found aborted)
        if not succeeded:
            if entry is not None and entry[1] == "progress":
                del self.tokens[token]
                self._log(KIND_TOKEN, orjson.dumps({"t": token, "s": "f"}))
            return
        expires = time.time() + TOKEN_LIFETIME
        entry = self.tokens[token] = [digest, "done", expires, None, None, None]
        entry[5] = self._log(KIND_TOKEN, _token_record(token, entry))

    # ------------------------------------------------------------ replay

    def _replay(self, kind: int, payload: bytes) -> None:
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.error("transactions: unreadable commit-log record of kind %d skipped", kind)
            return
        if kind == KIND_PREPARE:
            tx = record["tx"]
            previous = self.intents.get(tx)
            if previous is not None:
                self._release(previous)      # a re-logged copy of the same intent
            intent = Intent(tx, record["c"])
            intent.replayed = True
            for table_id, key_hex, op, new in record["w"]:
                key = bytes.fromhex(key_hex)
                intent.writes.append((table_id, key, op, new, _UNKNOWN))
                intent.keys.append((table_id, key))
                self.locks[(table_id, key)] = intent
            self.intents[tx] = intent
        elif kind == KIND_RESOLVED:
            intent = self.intents.pop(record["tx"], None)
            if intent is not None:
                self._release(intent)
        elif kind == KIND_DECISION:
            self.decisions[record["tx"]] = Decision(record["tx"], set(record["p"]), record.get("k"))
        elif kind == KIND_FORGET:
            self.decisions.pop(record["tx"], None)
        elif kind == KIND_TOKEN:
            state = record.get("s", "d")
            if state == "f":
                self.tokens.pop(record["t"], None)
            elif record["e"] > time.time():
                # segment 0: older than any active segment, so the first sweep logs it again
                self.tokens[record["t"]] = ([record["h"], "done", record["e"], None, None, 0] if state == "d" else
                                            [record["h"], "progress", record["e"], record["x"], record["c"], 0])

    # ------------------------------------------------------------ background: resolve, re-log, expire

    async def _sweep_loop(self) -> None:
        from shardserver.shard.executor import transactions as tx_ops
        while True:
            try:
                self._sweep(tx_ops)
            except Exception:
                log.exception("transactions: sweep failed")
            await asyncio.sleep(SWEEP_INTERVAL)

    def _sweep(self, tx_ops) -> None:
        now = time.monotonic()
        active = self.storage.commitlog.active_segment_id
        # The commit log deletes a segment once no memtable needs it; a record that is still
        # needed is written again into the active segment before that can happen to it.
        for intent in list(self.intents.values()):
            if intent.segment < active and intent.resolving is None:
                intent.segment = self._log(KIND_PREPARE, self._prepare_record(intent))
            if (intent.replayed or now - intent.created > RESOLVE_AFTER) and intent.resolving is None:
                self._spawn(self._resolve(intent, tx_ops))
        for decision in list(self.decisions.values()):
            if decision.segment < active:
                decision.segment = self._log(KIND_DECISION, _decision_record(decision))
            # The coordinating request pushes its own decision; the sweep retries what it could not deliver.
            if not decision.pushing and now - decision.created > RESOLVE_AFTER:
                self._spawn(self.push_commit(self.svc, decision, lambda s, t: tx_ops.send_commit(self.svc, s, t),
                                             lambda d: tx_ops.tell_token_done(self.svc, d)))
        for lock_key, entry in list(self.locks.items()):
            if entry.__class__ is ReadLock and now - entry.created > READ_LOCK_LIFETIME:
                entry.broken = True
                del self.locks[lock_key]
        for token in [t for t, (created, _) in self.read_holds.items() if now - created > READ_LOCK_LIFETIME]:
            _, holds = self.read_holds.pop(token)
            self.unlock_read([(lk, entry) for lk, entry, _ in holds])
        wall = time.time()
        for token in [t for t, e in self.tokens.items() if e[2] < wall]:
            del self.tokens[token]
        for token, entry in self.tokens.items():
            # a logged claim or outcome (entry[5] is its segment) outlives its segment as the
            # intents and decisions do: a retry after a restart must still find it
            if entry[5] is not None and entry[5] < active:
                entry[5] = self._log(KIND_TOKEN, _token_record(token, entry))

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._resolvers.add(task)
        task.add_done_callback(self._resolvers.discard)

    async def _resolve(self, intent: Intent, tx_ops) -> None:
        if intent.resolving is not None or intent.tx not in self.intents:
            return
        # Mark it so the sweep does not ask twice at once; commit() replaces the marker.
        intent.created = time.monotonic()
        intent.replayed = False
        try:
            answer = await tx_ops.ask_status(self.svc, intent.coordinator, intent.tx)
        except DynamoDBError as error:
            log.info("transaction %s: coordinator shard %d not reachable (%s); asking again later",
                     intent.tx, intent.coordinator, error.message)
            return
        if answer == b"c":
            await self.commit(self.svc, intent.tx)
            log.info("transaction %s: committed after recovery", intent.tx)
        elif answer == b"a":
            self.abort(intent.tx)
            log.info("transaction %s: aborted (coordinator has no commit decision)", intent.tx)

    def stats(self) -> dict:
        return {"transaction_intents": len(self.intents), "transaction_decisions": len(self.decisions),
                "transaction_conflicts_total": self.conflicts_total,
                "transaction_commits_total": self.commits_total, "transaction_aborts_total": self.aborts_total}
