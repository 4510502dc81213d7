"""The SQLite job queue: priority order, atomic claims, persistence across a restart."""

import threading

from diffblocks.server.queue import JobQueue


def test_priority_then_submission_order(tmp_path):
    queue = JobQueue(tmp_path / "q.sqlite")
    ids = [queue.submit({"n": i}, priority=p).id for i, p in enumerate([0, 5, 0, 5, -1])]
    order = [queue.claim("cpu", timeout=0).id for _ in ids]
    assert order == [ids[1], ids[3], ids[0], ids[2], ids[4]]
    assert queue.claim("cpu", timeout=0) is None


def test_each_job_is_claimed_exactly_once_by_concurrent_workers(tmp_path):
    queue = JobQueue(tmp_path / "q.sqlite")
    submitted = {queue.submit({"n": i}).id for i in range(200)}
    claimed, lock = [], threading.Lock()

    def worker():
        while (job := queue.claim("cpu", timeout=0)) is not None:
            with lock:
                claimed.append(job.id)
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(submitted)


def test_each_job_is_claimed_exactly_once_through_several_connections_to_the_file(tmp_path):
    """As the engine's process and the server do: each claimer its own connection, so only SQLite's lock keeps
    two from taking the same job."""
    path = tmp_path / "q.sqlite"
    first = JobQueue(path)
    submitted = {first.submit({"n": i}).id for i in range(300)}
    claimed, lock = [], threading.Lock()

    def worker(queue):
        while (job := queue.claim("cpu", timeout=0)) is not None:
            assert job.status == "running" and job.device == "cpu" and job.workflow.keys() == {"n"}
            with lock:
                claimed.append(job.id)
    queues = [first, *(JobQueue(path) for _ in range(5))]  # opened first: opening requeues the jobs a stop left running
    threads = [threading.Thread(target=worker, args=(queue,)) for queue in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == len(submitted) and set(claimed) == submitted
    assert {job.status for job in queues[0].list(limit=1000)} == {"running"}


def test_restart_keeps_queued_jobs_and_history_and_requeues_running_ones(tmp_path):
    queue = JobQueue(tmp_path / "q.sqlite")
    done, running, waiting = (queue.submit({"n": i}) for i in range(3))
    queue.claim("cpu", timeout=0)
    queue.finish(done.id, "done", {"outputs": {"a": {"b": 1}}})
    queue.claim("cuda:0", timeout=0)
    queue.close()
    reopened = JobQueue(tmp_path / "q.sqlite")
    assert reopened.get(done.id).status == "done" and reopened.get(done.id).result["outputs"] == {"a": {"b": 1}}
    assert reopened.get(running.id).status == "queued" and reopened.get(running.id).device is None
    assert [job.id for job in reopened.active()] == [running.id, waiting.id]
    assert reopened.claim("cpu", timeout=0).workflow == {"n": 1}


def test_cancel_only_touches_queued_jobs(tmp_path):
    queue = JobQueue(":memory:")
    first, second = queue.submit({}), queue.submit({})
    queue.claim("cpu", timeout=0)
    assert not queue.cancel_queued(first.id) and queue.cancel_queued(second.id)
    assert not queue.cancel_queued(second.id) and not queue.cancel_queued("nope")
    assert queue.get(second.id).status == "cancelled" and queue.get(second.id).finished is not None


def test_claim_waits_for_a_submission_and_close_wakes_it(tmp_path):
    queue = JobQueue(tmp_path / "q.sqlite")
    got = []
    waiter = threading.Thread(target=lambda: got.append(queue.claim("cpu")))
    waiter.start()
    job = queue.submit({"x": 1})
    waiter.join(10)
    assert got[0].id == job.id
    closer = threading.Thread(target=lambda: got.append(queue.claim("cpu")))
    closer.start()
    queue.stop_claims()
    closer.join(10)
    assert got[1] is None


def test_a_claim_on_another_connection_to_the_file_wakes_at_poke_and_on_submit_is_called(tmp_path):
    """Two processes share the file with ``engine_process``: the server's queue stores a job and calls
    ``on_submit``, which pokes the engine's queue; its waiting claim takes the job then, not at its timeout."""
    server, engine = JobQueue(tmp_path / "q.sqlite"), JobQueue(tmp_path / "q.sqlite")
    told = []
    server.on_submit = lambda job: (told.append(job.id), engine.poke())
    claimed = []
    waiter = threading.Thread(target=lambda: claimed.append(engine.claim("cpu", timeout=60)))
    waiter.start()
    job = server.submit({"n": 1})
    waiter.join(10)
    assert not waiter.is_alive() and claimed[0].id == job.id == told[0]
    assert server.get(job.id).status == "running"
    unpoked = engine.claim("cpu", timeout=0.2)  # nothing queued: poke or not, None once the timeout passes
    assert unpoked is None


def test_a_worker_that_took_the_last_job_waits_without_a_transaction_until_one_is_submitted(tmp_path):
    """A worker asks for the next job after each one; when the job it took was the last, that ask must not be a
    write transaction on the file (it ran after every job, against the next request). A poke or a submission
    makes it look again; a job stored by another connection without a poke is found by a claim with a timeout."""
    queue = JobQueue(tmp_path / "q.sqlite")
    transactions = []
    queue._db.set_trace_callback(lambda sql: transactions.append(sql) if sql.startswith("BEGIN") else None)
    first, second = queue.submit({"n": 1}), queue.submit({"n": 2})
    assert [queue.claim("cpu").id, queue.claim("cpu").id] == [first.id, second.id]
    assert len(transactions) == 2
    got = []
    waiter = threading.Thread(target=lambda: got.append(queue.claim("cpu")), daemon=True)
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and len(transactions) == 2  # waiting, the file untouched
    queue.poke()
    waiter.join(0.3)
    assert waiter.is_alive() and len(transactions) == 3  # looked once, found nothing, waits again
    third = queue.submit({"n": 3})
    waiter.join(10)
    assert got[0].id == third.id and len(transactions) == 4
    for job in (first, second, third):  # (a queue opening the file queues running jobs again, as after a stop)
        queue.finish(job.id, "done")
    JobQueue(tmp_path / "q.sqlite").submit({"n": 4})  # another connection, no poke
    assert queue.claim("cpu", timeout=0).workflow == {"n": 4}
