import jobq


async def test_enqueue_dequeue_complete(queue: jobq.Queue) -> None:
    job = await queue.enqueue("send_message", {"to": "+821012345678"})
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == job.id
    assert claimed.status is jobq.JobStatus.PROCESSING
    await queue.complete(claimed, {"ok": True})
    done = await queue.get_job(job.id)
    assert done is not None and done.status is jobq.JobStatus.COMPLETED and done.result == {"ok": True}
