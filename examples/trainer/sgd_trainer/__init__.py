"""An example regsearch trainer: your own PyTorch loop, searched by regsearch.

Registered as ``sgd-cosine`` (entry point group ``regsearch.trainers``); a spec names it with
``training: {trainer: sgd-cosine, options: {lr: 0.1, mixup: 0.2}}``.
"""

from __future__ import annotations

import copy
import math

import pydantic
import torch
import torch.nn.functional as F


class Options(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    lr: float = pydantic.Field(default=0.1, gt=0, le=10)
    momentum: float = pydantic.Field(default=0.9, ge=0, lt=1)
    weight_decay: float = pydantic.Field(default=5e-4, ge=0, le=1)
    warmup_epochs: int = pydantic.Field(default=1, ge=0)
    label_smoothing: float = pydantic.Field(default=0.1, ge=0, lt=1)
    mixup: float = pydantic.Field(default=0.0, ge=0, description="Beta(a, a) mixing; 0: off")
    batch_size: int = pydantic.Field(default=128, ge=2)


def evaluate(model, x, y):
    model.eval()
    with torch.inference_mode():
        logits = model(x)
        return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).sum().item() / len(y)


def train(ctx):
    """SGD with momentum, cosine schedule with linear warmup, label smoothing, mixup."""
    opt, d = ctx.options, ctx.data
    model = ctx.build_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=opt.lr, momentum=opt.momentum,
                                weight_decay=opt.weight_decay, nesterov=True)
    steps_per_epoch = max(1, len(d.y_train) // opt.batch_size)
    total, warmup = ctx.epochs * steps_per_epoch, opt.warmup_epochs * steps_per_epoch

    def rate(step):  # linear warmup, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    generator = torch.Generator().manual_seed(ctx.seed)
    beta = torch.distributions.Beta(opt.mixup, opt.mixup) if opt.mixup > 0 else None
    best, best_state = -1.0, None
    for epoch in range(1, ctx.epochs + 1):
        model.train()
        order = torch.randperm(len(d.y_train), generator=generator).to(ctx.device)
        for i in range(steps_per_epoch):
            index = order[i * opt.batch_size:(i + 1) * opt.batch_size]
            x, y = d.x_train[index], d.y_train[index]
            if d.augment is not None:
                x = d.augment(x)
            if beta is None:
                loss = F.cross_entropy(model(x), y, label_smoothing=opt.label_smoothing)
            else:
                lam = float(beta.sample())
                mix = torch.randperm(len(y), generator=generator).to(ctx.device)
                out = model(lam * x + (1 - lam) * x[mix])
                loss = (lam * F.cross_entropy(out, y, label_smoothing=opt.label_smoothing)
                        + (1 - lam) * F.cross_entropy(out, y[mix], label_smoothing=opt.label_smoothing))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        train_loss, train_acc = evaluate(model, d.x_train[: len(d.y_val)], d.y_train[: len(d.y_val)])
        val_loss, val_acc = evaluate(model, d.x_val, d.y_val)
        stop = ctx.report(epoch, train_loss=train_loss, val_loss=val_loss, train_acc=train_acc, val_acc=val_acc)
        if val_acc > best:
            best, best_state = val_acc, copy.deepcopy(model.state_dict())
            ctx.save_best(model)  # this epoch's weights: kept, and what the test accuracy is measured with
        if stop:
            return  # pruned, cancelled, or the worker is stopping
    model.load_state_dict(best_state)
    ctx.test(test_acc=evaluate(model, d.x_test, d.y_test)[1])


train.Options = Options
