"""A job's server-sent event stream (`GET /api/v1/jobs/{id}/events`).

- `messages.py`: what a stream says (the job's state, its events from the outbox `JobEvent`,
  previews), read from the database, and `JobEventStream`, the view's answer.
- `hub.py`: one per web process: a shared Redis pub/sub subscription and the reads of the
  events table, fanned out to the open streams of each job.
- `app.py`: the ASGI app that serves the path: the Django view (authentication, the team's job)
  on a small thread pool, then the live stream on the event loop, where it holds no thread.
"""
