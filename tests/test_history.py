import math
import random

from trainmon.engine.core.history import History


def test_history_stays_bounded_and_keeps_shape():
    h = History(capacity=64, recent=100)
    for i in range(100_000):
        h.append(i, float(i))
    assert len(h) <= 64
    pts = h.points()
    assert pts[0][0] < 2000 and pts[-1][0] > 98_000
    assert all(abs(x - y) < 1e-9 for x, y in pts)  # averaging x and y together keeps y = x
    assert h.version == 100_000


def test_since_returns_only_new_points_and_resets_when_behind():
    h = History(capacity=16, recent=10)
    for i in range(5):
        h.append(i, i * 2.0)
    d = h.since(3)
    assert d.points == [(3, 6.0), (4, 8.0)] and not d.reset and d.version == 5
    assert h.since(5).points == []
    for i in range(5, 50):
        h.append(i, 1.0)
    d = h.since(3)
    assert d.reset and d.version == 50


def test_viewer_copy_matches_producer():
    producer, viewer = History(capacity=32), History(capacity=32)
    for i in range(1000):
        producer.append(i, math.sin(i / 50))
        if i % 37 == 0:
            viewer.apply(producer.since(viewer.version))
    viewer.apply(producer.since(viewer.version))
    assert viewer.points() == producer.points()


def test_nonfinite_is_flagged_not_averaged():
    h = History(capacity=4)
    for i, y in enumerate([1.0, float("nan"), 3.0, float("inf"), 5.0]):
        h.append(i, y)
    assert [p[1] for p in h.points()] == [1.0, 3.0, 5.0]
    assert [x for x, _ in h.nonfinite] == [1, 3]


def test_bulk_extend_and_extend_run_equal_appending_each_point():
    """`extend` (a mirror's delta) and `extend_run` (a hot loop's span) take whole strides in bulk: the series,
    its version, its recent ring and its non-finite points are exactly what appending each point gives."""
    rng = random.Random(1)
    for _ in range(300):
        capacity = rng.choice([2, 3, 4, 8, 16])
        one, bulk, run = (History(capacity=capacity, recent=50) for _ in range(3))
        x = 0
        for _ in range(rng.randint(1, 12)):
            values = [rng.random() for _ in range(rng.randint(0, 120))]  # spans past the ring of 50 too
            if values and rng.random() < 0.2:
                values[rng.randrange(len(values))] = math.nan
            points = [(x + 1 + i, v) for i, v in enumerate(values)]
            for px, py in points:
                one.append(px, py)
            bulk.extend(points)
            if all(math.isfinite(v) for v in values):
                run.extend_run(x, values)
            else:
                run.extend(points)
            x += len(values)
        for history in (bulk, run):
            assert history.points() == one.points()
            assert (history.version, list(history._recent), list(history.nonfinite)) == (
                one.version, list(one._recent), list(one.nonfinite))
