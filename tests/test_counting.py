"""Issue 9, counting and job loading on real tiny models: samples from the targets, IterableDatasets
with a length, one-shot iterators, a loss that stops being one number, and plan = run."""

from __future__ import annotations

import torch
from conftest import collect, regression_data
from torch import nn
from torch.utils.data import IterableDataset, TensorDataset

from trainmon.engine.control.channel import Channel
from trainmon.engine.core import messages as msg
from trainmon.engine.jobs.batches import batch_samples
from trainmon.engine.jobs.job import Job, RunConfig, dataset_length
from trainmon.engine.jobs.preflight import preflight
from trainmon.engine.run.trainer import Trainer


def run(job, **overrides):
    channel = Channel()
    config = RunConfig.for_job(job, **overrides)
    trainer = Trainer(job, config, channel)
    result = trainer.run()
    snaps, events = collect(channel)
    return trainer, result, snaps, events


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


# ------------------------------------------------------------------ item 1: samples come from the targets
class TimeMean(nn.Module):
    """Sequence-first inputs (T, B, F) → (B, 1): a linear layer on the mean over time."""

    def __init__(self, features: int = 3) -> None:
        super().__init__()
        self.lin = nn.Linear(features, 1)

    def forward(self, x):
        return self.lin(x.mean(0))


def sequences(m=50, t=5, f=3):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(m, t, f, generator=g)
    y = x.mean(1) @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(m, 1, generator=g)
    return x, y


def time_first(items):
    """Collate into (T, B, F) inputs and (B, 1) targets, as sequence models without batch_first take them."""
    xs, ys = zip(*items)
    return torch.stack(xs, dim=1), torch.stack(ys)


def sequence_job(**defaults):
    torch.manual_seed(0)
    x, y = sequences()
    base = dict(epochs=1, batch_size=10, lr=0.1, shuffle=False, collate_fn=time_first,
                optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr))
    base.update(defaults)
    return Job(name="seq", model=TimeMean(), train_dataset=TensorDataset(x, y), loss_fn=nn.functional.mse_loss, **base)


def test_sequence_first_inputs_count_samples_from_the_targets():
    # 50 sequences of length 5 at batch 10: 5 iterations and 50 samples per epoch (not 5 · 5 = 25)
    _, result, snaps, events = run(sequence_job(epochs=2))
    ended = of(events, msg.EpochEnded)
    assert [(e.iterations, e.samples_seen) for e in ended] == [(5, 50), (5, 100)]
    assert result.samples_seen == 100 and snaps[-1].total_samples == 100
    assert batch_samples(time_first([(torch.zeros(5, 3), torch.zeros(1))] * 10)) == 10


def test_sequence_first_accumulation_weights_equal_one_big_batch():
    # batches of 20, 20, 10 with k = 2: windows of 40 and 10 samples, each one SGD step on its mean loss
    trainer, *_ = run(sequence_job(batch_size=20, accum=2))
    torch.manual_seed(0)
    x, y = sequences()
    model = TimeMean()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for start, n in ((0, 40), (40, 10)):
        opt.zero_grad()
        nn.functional.mse_loss(model(x[start:start + n].transpose(0, 1)), y[start:start + n]).backward()
        opt.step()
    for got, want in zip(trainer.model.parameters(), model.parameters()):
        torch.testing.assert_close(got.detach(), want.detach(), atol=1e-6, rtol=0)


def test_disagreeing_first_dimensions_are_one_warning_naming_the_count():
    warnings = preflight(sequence_job(), RunConfig.for_job(sequence_job()))
    assert warnings == ["first training batch: the inputs' first dimension is 5 but the targets' is 10: trainmon "
                        "counts 10 samples per batch, from the targets; set Job.batch_count=lambda batch: ... to "
                        "count otherwise"]
    counted = sequence_job(batch_count=lambda batch: batch[1].shape[0])  # declared: no warning
    assert preflight(counted, RunConfig.for_job(counted)) == []


def test_targets_without_a_tensor_count_from_the_inputs():
    assert batch_samples((torch.zeros(7, 2), ["a"] * 7)) == 7
    assert batch_samples(({"tokens": torch.zeros(4, 9)}, {"label": torch.zeros(9), "w": torch.zeros(9)})) == 9


# ------------------------------------------------------------------ item 3: IterableDataset with __len__
class Sized(IterableDataset):
    """100 (x, y) rows with `__len__`; re-iterable."""

    def __init__(self, m=100):
        self.x, self.y = regression_data(m)

    def __len__(self):
        return len(self.x)

    def __iter__(self):
        return iter(zip(self.x, self.y))


def iterable_job(data, **defaults):
    torch.manual_seed(0)
    base = dict(epochs=2, batch_size=5, lr=0.05, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr),
                loss_fn=nn.functional.mse_loss)
    base.update(defaults)
    return Job(name="it", model=nn.Linear(5, 1), train_dataset=data, **base)


def test_iterable_dataset_with_a_length_has_known_totals():
    _, result, snaps, events = run(iterable_job(Sized()))
    assert dataset_length(Sized()) == 100
    assert (snaps[0].dataset_size, snaps[0].total_iterations, snaps[0].total_samples) == (100, 40, 200)
    assert [(e.iterations, e.iterations_planned) for e in of(events, msg.EpochEnded)] == [(20, 20), (20, 20)]
    assert result.samples_seen == 200 and not of(events, msg.Warned)


def test_iterable_dataset_with_a_length_and_drop_last():
    _, result, snaps, events = run(iterable_job(Sized(103), drop_last=True, epochs=1))
    assert (snaps[0].iterations_in_epoch, snaps[0].total_samples) == (20, 100)
    assert result.samples_seen == 100


class NoLength(Sized):
    def __len__(self):
        raise TypeError("a stream has no length")


def test_a_len_that_raises_means_unknown_length():
    assert dataset_length(NoLength()) is None


# ------------------------------------------------------------------ item 4: one-shot iterables
class OneShot(IterableDataset):
    """Rows from one iterator, made once: a second epoch finds it exhausted (a stream, a generator)."""

    def __init__(self, m=100, length=True):
        x, y = regression_data(m)
        self.rows = iter(list(zip(x, y)))
        self.length = m if length else None

    def __len__(self):
        if self.length is None:
            raise TypeError("no length")
        return self.length

    def __iter__(self):
        return self.rows


def test_preflight_takes_nothing_from_a_one_shot_iterable_and_an_empty_epoch_warns():
    job = iterable_job(OneShot())
    assert preflight(job, RunConfig.for_job(job)) == []
    _, result, _, events = run(job)
    ended = of(events, msg.EpochEnded)
    assert [(e.iterations, e.samples_seen) for e in ended] == [(20, 100), (0, 100)]  # epoch 1 had every sample
    warned = of(events, msg.Warned)
    assert [(w.epoch, w.message) for w in warned] == [(2, "epoch 2 ran 0 iterations of the 20 planned: the training "
                                                          "data ran out; an IterableDataset must return a new iterator "
                                                          "from each __iter__ call (not warned again)")]
    assert isinstance(result, msg.Finished)


def test_one_shot_iterable_without_a_length_warns_once():
    job = iterable_job(OneShot(length=False), epochs=3)
    assert preflight(job, RunConfig.for_job(job)) == []
    _, result, _, events = run(job)
    assert [e.iterations for e in of(events, msg.EpochEnded)] == [20, 0, 0]
    assert [w.message.split(":")[0] for w in of(events, msg.Warned)] == [
        "epoch 2 ran 0 iterations (the epochs before ran 20)"]


def test_first_batch_of_an_iterable_is_checked_when_training_draws_it():
    x, y = regression_data(40)
    job = iterable_job(Sized(40))
    job.model = nn.Linear(4, 1)  # inputs have 5 features
    _, result, _, _ = run(job)
    assert isinstance(result, msg.Failed) and result.phase == "setup"
    assert result.message.startswith("first training batch: the model failed on inputs (5, 5) float32")


# ------------------------------------------------------------------ item 12: a loss that stops being one number
def sometimes_vector(outputs, targets):
    errors = (outputs - targets) ** 2
    sometimes_vector.calls += 1
    return errors.mean() if sometimes_vector.calls <= 3 else errors.mean(1)


def test_a_loss_that_turns_non_scalar_later_names_the_iteration_and_the_users_function():
    sometimes_vector.calls = 0
    job = iterable_job(TensorDataset(*regression_data(100)), loss_fn=sometimes_vector, epochs=1, shuffle=False)
    assert preflight(job, RunConfig.for_job(job)) == []  # the preflight saw call 1: one number
    _, result, _, _ = run(job)
    assert isinstance(result, msg.Failed) and result.phase == "training"
    line = sometimes_vector.__code__.co_firstlineno
    assert result.message == (f"iteration 3 of epoch 1 (global iteration 3): the loss must be one number (the batch "
                              f"mean), got (5,) float32 from model output (5, 1) float32 and targets (5, 1) float32 "
                              f"(Job.loss_fn at test_counting.py:{line} in sometimes_vector)")


def test_a_loss_that_is_not_one_number_in_validation_names_the_batch():
    def loss(outputs, targets):  # per-sample losses in eval mode only
        errors = ((outputs - targets) ** 2).mean(1)
        return errors.mean() if torch.is_grad_enabled() else errors

    x, y = regression_data(30)
    job = iterable_job(TensorDataset(*regression_data(100)), loss_fn=loss, epochs=1, val_dataset=TensorDataset(x, y))
    _, result, _, _ = run(job)
    assert isinstance(result, msg.Failed)
    assert result.message.startswith("validation batch 1 after epoch 1: the loss must be one number (the batch mean), "
                                     "got (5,) float32")  # validation batches are training-sized (b = 5)


# ------------------------------------------------------------------ item 6: the plan is the run's
def test_plan_and_run_agree_for_drop_last_growth_and_cap():
    x, y = regression_data(1000)
    job = Job(name="grow", model=nn.Linear(5, 1), train_dataset=TensorDataset(x, y), loss_fn=nn.functional.mse_loss,
              epochs=2, batch_size=64, drop_last=True, batch_growth=2.0, max_batch_size=128, lr=0.01)
    config = RunConfig.for_job(job)
    plan = config.plan(dataset_length(job.train_dataset))
    assert [(e.batch_size, e.iterations, e.samples) for e in plan.epochs] == [(64, 15, 960), (128, 7, 896)]
    _, result, snaps, _ = run(job)
    assert (plan.total_iterations, plan.total_samples) == (22, 1856)
    assert (snaps[0].total_iterations, snaps[0].total_samples) == (22, 1856)
    assert (result.global_iteration, result.samples_seen) == (22, 1856)
