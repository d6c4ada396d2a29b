"""Publications slow to `RunCore.IDLE_INTERVAL` while nobody watches live, and come at `publish_interval`
again once a viewer subscribes (the control socket counts it, `Channel.watched` reads the count)."""

from __future__ import annotations

import pytest
from engines import wait_until

from trainmon.engine.control.channel import Channel


class Sink:
    """Counts the publications a channel hands its sinks; `watching` as the control server keeps it."""

    def __init__(self) -> None:
        self.published = 0
        self.watching = 0

    def publish(self, snapshot, delta) -> None:
        self.published += 1

    def emit(self, event) -> None:
        pass


def tracker_at(now: list[float], sink: Sink, publish_interval: float = 0.1):
    from trainmon.engine.run.tracker import Tracker

    channel = Channel(up=False, sinks=[sink])
    tracker = Tracker("idle", epochs=1, batch_size=2, session=False, telemetry=False, channel=channel,
                      clock=lambda: now[0], publish_interval=publish_interval)
    return tracker


@pytest.mark.parametrize("watching, at, published", [
    # (a viewer watches?, the clock at each publish() call, how many calls published)
    (0, [0.05, 0.2, 0.45, 0.55, 0.7, 1.04, 1.06], [0.55, 1.06]),  # every 0.5 s while nobody watches
    (1, [0.05, 0.2, 0.45, 0.55, 0.7, 1.04, 1.06], [0.2, 0.45, 0.55, 0.7, 1.04]),  # every 0.1 s for a viewer
])
def test_the_rate_follows_whether_a_viewer_watches(watching, at, published):
    now, sink = [0.0], Sink()
    tracker = tracker_at(now, sink)
    sink.watching = watching
    tracker.core.publish(force=True)  # at 0: the start's publication
    counted = []
    for t in at:
        now[0] = t
        before = sink.published
        tracker.core.publish()
        if sink.published > before:
            counted.append(t)
    assert counted == published
    assert tracker.core.interval_now() == (0.1 if watching else 0.5)


def test_an_in_process_poller_watches_and_an_interval_of_zero_stays_zero():
    now, sink = [0.0], Sink()
    tracker = tracker_at(now, sink, publish_interval=0)
    assert tracker.core.interval_now() == 0  # tests that read every iteration's snapshot keep them all
    channel = Channel(sinks=[sink])
    assert not channel.watched()
    channel.poll()
    assert channel.watched()


@pytest.mark.timeout(60)
def test_a_socket_viewer_makes_the_run_watched_until_it_leaves(tmp_path):
    import trainmon
    from trainmon.engine.control.client import RunClient

    run = trainmon.track(epochs=1, batch_size=2, quiet=True, run_dir=str(tmp_path / "run"))
    try:
        channel = run.tracker.channel
        assert not channel.watched() and run.tracker.core.interval_now() == 0.5
        client = RunClient(run.tracker.session.rundir.info["socket"]).subscribe()
        wait_until(channel.watched, timeout=20, what="the server to count the viewer")
        assert run.tracker.core.interval_now() == 0.1
        client.close()
        wait_until(lambda: not channel.watched(), timeout=20, what="the server to drop the viewer")
    finally:
        run.close()
