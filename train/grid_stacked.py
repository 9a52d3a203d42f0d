"""The grid search's cross-validation fits, trained together as one stacked network (TensorFlow).

``GridSearchCV(cv=3)`` over the tutorial's 12 candidates fits the same small network 36 times,
one after another; each fit is ~430 rows through a 9-layer MLP, so almost all of its time is the
per-step dispatch of a tiny program (27.9 s of the 42 s ``train all`` on this machine). Here the
36 fits are the members of one network whose layer ``l`` holds a ``[M, in, out]`` kernel: member
``m``'s slice is fit ``m``'s weights. Members share no parameter, so the gradient of the summed
loss with respect to member ``m``'s slice is exactly fit ``m``'s own gradient, and one dispatch
of one program steps all of them (the arithmetic is the same, the per-step overhead paid once).

Each member keeps everything its own fit had: its fold's rows (scikit-learn's ``KFold(cv)``, as
``GridSearchCV(cv=int)`` splits a regressor's data), the last 20% of them held out for validation,
a fresh seeded shuffle every epoch, its batch size (a short last batch, the loss the mean over
its real rows), learning rate (plain SGD), dropout rate (inverted dropout as Keras computes it),
and Keras' ``EarlyStopping(monitor="val_loss", patience, restore_best_weights=True)`` rule
applied per member (a stopped member takes no more steps). Members are grouped by batch size (and
epoch budget), one compiled program per group. Candidates come in ``ParameterGrid``'s order; each fold is scored
with ``r2_score`` on its held-out rows (``KerasRegressor.score``), ranked as ``GridSearchCV``
ranks (``rankdata(-mean, "min")``). ``tests/train/test_grid_stacked.py`` checks a member
against the same fit run alone by :class:`edgekit.train.fit.Trainer`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIVATIONS = ("sigmoid", "relu", "linear", "tanh")


@dataclass(frozen=True)
class Member:
    """One cross-validation fit: a candidate's parameters on one fold."""

    candidate: int
    fold: int
    learning_rate: float
    dropout_rate: float
    batch_size: int
    epochs: int
    train_idx: np.ndarray  # rows of X the fit trains on (its last VALIDATION_SPLIT validate)
    test_idx: np.ndarray  # rows the fold scores


def architecture(model) -> tuple[list[tuple[int, int, str]], list[int]]:
    """``([(fan_in, units, activation)] per Dense, [index of the Dense each Dropout follows])`` of ``model``.

    Raises:
        ValueError: a layer other than Dense (with a listed activation) or Dropout.
    """
    import keras

    dense: list[tuple[int, int, str]] = []
    drops: list[int] = []
    width = int(model.inputs[0].shape[-1])
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            act = keras.activations.serialize(layer.activation)
            act = act if isinstance(act, str) else act.get("config", {}).get("name", str(act))
            if act not in ACTIVATIONS:
                raise ValueError(f"stacked grid: activation must be one of {ACTIVATIONS}, got {act!r}")
            dense.append((width, int(layer.units), act))
            width = int(layer.units)
        elif isinstance(layer, keras.layers.Dropout):
            if not dense:
                raise ValueError("stacked grid: a Dropout before the first Dense is not supported")
            drops.append(len(dense) - 1)
        else:
            raise ValueError(f"stacked grid: layers must be Dense or Dropout, got {type(layer).__name__}")
    return dense, drops


class StackedGroup:
    """Members of one batch size trained as one network (one XLA program).

    Args:
        dense, drops: the network, from :func:`architecture`.
        initial: ``[kernel, bias, kernel, bias, ...]``: every member's starting weights.
        members: the fits (one ``batch_size``).
        x, y: every row the members index into (float32 features, (n,) or (n, 1) targets).
        validation_split: fraction of each member's training rows held out (its last rows).
        patience: EarlyStopping patience (epochs without a val_loss improvement).
        seed: seeds initial weights, shuffles and dropout.
    """

    def __init__(self, dense, drops, initial: list[np.ndarray], members: list[Member], x: np.ndarray, y: np.ndarray,
                 validation_split: float, patience: int, seed: int):
        import tensorflow as tf

        if not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be in (0, 1) (early stopping watches val_loss), "
                             f"got {validation_split}")
        self.members, self.patience = members, patience
        m = len(members)
        k = members[0].batch_size
        if any(mb.batch_size != k for mb in members):
            raise ValueError("a stacked group's members must share one batch size")
        y = np.asarray(y, np.float32).reshape(-1)
        fits, vals = [], []
        for mb in members:
            n_val = int(round(len(mb.train_idx) * validation_split))
            fits.append(mb.train_idx[:-n_val] if n_val else mb.train_idx)
            vals.append(mb.train_idx[-n_val:] if n_val else mb.train_idx[:0])
        cap, vcap = max(map(len, fits)), max(1, max(map(len, vals)))

        def pad(rows_list, width):
            xs = np.zeros((m, width, x.shape[1]), np.float32)
            ys = np.zeros((m, width), np.float32)
            for i, rows in enumerate(rows_list):
                xs[i, : len(rows)], ys[i, : len(rows)] = x[rows], y[rows]
            return xs, ys

        xf, yf = pad(fits, cap + k)
        xv, yv = pad(vals, vcap)
        n_fit = tf.constant([len(r) for r in fits], tf.int32)
        n_val = tf.constant([len(r) for r in vals], tf.int32)
        lr = tf.constant([mb.learning_rate for mb in members], tf.float32)
        rate = tf.constant([mb.dropout_rate for mb in members], tf.float32)
        rng = np.random.default_rng(seed)
        tiled = [np.repeat(np.asarray(a, np.float32)[None], m, axis=0) for a in initial]
        self.weights = [(tf.Variable(tiled[2 * i]), tf.Variable(tiled[2 * i + 1])) for i in range(len(dense))]
        self.best = [(tf.Variable(w), tf.Variable(b)) for w, b in self.weights]
        self.best_val = tf.Variable(tf.fill([m], np.inf))
        self.wait = tf.Variable(tf.zeros([m], tf.int32))
        self.active = tf.Variable(tf.ones([m], tf.bool))
        self.epochs_run = tf.Variable(tf.zeros([m], tf.int32))
        self.val_history: list[np.ndarray] = []  # per epoch: each member's val_loss (NaN once stopped)
        self.loss_history: list[np.ndarray] = []  # per epoch: each member's training loss
        params = [v for wb in self.weights for v in wb]
        acts = {"sigmoid": tf.sigmoid, "relu": tf.nn.relu, "linear": tf.identity, "tanh": tf.tanh}
        drop_after = set(drops)
        shuffle_seed, drop_seed = (int(v) for v in rng.integers(2**20, size=2))
        self._acts = _numpy_acts(dense)
        self._numpy: list | None = None  # the weights as numpy, for predict, once trained

        def forward(weights, h, rate_a, training, draw):
            for i, (w, b, (_, _, act)) in enumerate(zip(weights[0::2], weights[1::2], dense)):
                h = acts[act](tf.matmul(h, w) + b[:, None, :])
                if training and i in drop_after:
                    u = tf.random.stateless_uniform(tf.shape(h), seed=tf.stack([draw + drop_seed, tf.constant(i)]))
                    r = rate_a[:, None, None]
                    h = tf.where(u >= r, h / (1.0 - r), tf.zeros_like(h))
            return h[..., 0]

        def masked_mean(err, mask):
            return tf.reduce_sum(err * mask, 1) / tf.maximum(tf.reduce_sum(mask, 1), 1.0)

        xf, yf, xv, yv = (tf.constant(a) for a in (xf, yf, xv, yv))
        rows = tf.range(cap + k)
        window = tf.range(k)

        @tf.function  # graph mode: XLA compiled 2x slower here and ran no faster (measured)
        def epoch(e):
            # Only the members still training take part: their slices are gathered, trained for the
            # epoch and scattered back, so a stopped member costs nothing.
            act = tf.where(self.active)[:, 0]
            n_a, lr_a, rate_a = tf.gather(n_fit, act), tf.gather(lr, act), tf.gather(rate, act)
            xf_a, yf_a = tf.gather(xf, act), tf.gather(yf, act)
            w_a = [tf.gather(v, act) for v in params]
            lr_shaped = [tf.reshape(lr_a, [-1] + [1] * (len(v.shape) - 1)) for v in params]
            u = tf.random.stateless_uniform([m, cap + k], seed=tf.stack([e, tf.constant(shuffle_seed)]))
            u = tf.gather(u, act)  # each member's own shuffle, wherever it sits in the active set
            perm = tf.argsort(tf.where(rows[None, :] < n_a[:, None], u, 2.0 + tf.cast(rows, tf.float32)[None, :]))
            steps = tf.reduce_max((n_a + k - 1) // k)
            total = tf.zeros_like(lr_a)
            b = tf.constant(0)
            while b < steps:
                pos = b * k + window
                idx = tf.gather(perm, pos, axis=1)
                mask = tf.cast(pos[None, :] < n_a[:, None], tf.float32)
                xb, yb = tf.gather(xf_a, idx, batch_dims=1), tf.gather(yf_a, idx, batch_dims=1)
                with tf.GradientTape() as tape:
                    tape.watch(w_a)
                    per_member = masked_mean(tf.square(forward(w_a, xb, rate_a, True, e * 4096 + b) - yb), mask)
                    loss = tf.reduce_sum(per_member)
                grads = tape.gradient(loss, w_a)
                w_a = [w - s * g for w, s, g in zip(w_a, lr_shaped, grads)]
                total += per_member * tf.reduce_sum(mask, 1)
                b += 1
            for v, w in zip(params, w_a):
                v.scatter_nd_update(act[:, None], w)
            n_va = tf.gather(n_val, act)
            vmask = tf.cast(tf.range(vcap)[None, :] < n_va[:, None], tf.float32)
            val_a = masked_mean(tf.square(forward(w_a, tf.gather(xv, act), rate_a, False, 0) - tf.gather(yv, act)),
                                vmask)
            val = tf.tensor_scatter_nd_update(tf.fill([m], np.nan), act[:, None], val_a)
            # Keras' EarlyStopping, per member: the first epoch always improves; wait counts epochs
            # since the best; stop once it reaches patience without an improvement.
            active = self.active
            improved = active & ((e == 0) | (val < self.best_val))
            wait = tf.where(improved, 0, tf.where(active, self.wait + 1, self.wait))
            for (w, bias), (bw, bb) in zip(self.weights, self.best):
                bw.assign(tf.where(improved[:, None, None], w, bw))
                bb.assign(tf.where(improved[:, None], bias, bb))
            self.best_val.assign(tf.where(improved, val, self.best_val))
            self.wait.assign(wait)
            self.epochs_run.assign_add(tf.cast(active, tf.int32))
            self.active.assign(active & ~(~improved & (wait >= patience) & (e > 0)))
            loss_all = tf.tensor_scatter_nd_update(tf.fill([m], np.nan), act[:, None], total / tf.cast(n_a, tf.float32))
            return val, loss_all

        self._epoch = epoch

    def fit(self, epochs: int) -> None:
        """Train every member for up to ``epochs`` (fewer once all have stopped), then restore each one's best."""
        import tensorflow as tf

        for e in range(epochs):
            if not bool(tf.reduce_any(self.active)):
                break
            val, loss = self._epoch(tf.constant(e, tf.int32))
            self.val_history.append(val.numpy())
            self.loss_history.append(loss.numpy())
        for (w, b), (bw, bb) in zip(self.weights, self.best):
            w.assign(bw)
            b.assign(bb)
        self._numpy = None

    def predict(self, i: int, x: np.ndarray) -> np.ndarray:
        """Member ``i``'s predictions (inference: no dropout) for rows ``x``."""
        if self._numpy is None:
            self._numpy = [(w.numpy(), b.numpy()) for w, b in self.weights]
        h = np.asarray(x, np.float32)
        for (w, b), act in zip(self._numpy, self._acts):
            h = act(h @ w[i] + b[i])
        return h[:, 0]


def _numpy_acts(dense):
    from edgekit.train.dense_numpy import ACTIVATIONS as table

    return tuple(table[act] for _, _, act in dense)


def search(model, x: np.ndarray, y: np.ndarray, param_grid: dict, cv: int, patience: int,
           validation_split: float, seed: int, log=None) -> dict:
    """Cross-validate every candidate of ``param_grid`` (``learning_rate``, ``dropout_rate``, ``batch_size``,
    ``epochs``).

    Args:
        model: a Keras model of Dense and Dropout layers: the network each fit trains, from its
            current weights (every fit starts from the same ones, as scikeras'
            ``KerasRegressor(random_state=seed)`` starts each clone).
        x, y: the search's rows.
        param_grid: lists of values per parameter, as GridSearchCV takes them (``model__`` prefixes allowed).
        cv: folds; patience: EarlyStopping patience.
        validation_split: each fit's held-out share of its training rows; seed: seeds every fit.
        log: ``log(line)`` per finished group (default none).

    Returns:
        ``{"params": [...], "mean_test_score", "std_test_score", "rank_test_score", "split_scores",
        "epochs_run"}`` — GridSearchCV's ``cv_results_`` keys for what the grid reports.
    """
    from scipy.stats import rankdata
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, ParameterGrid

    dense, drops = architecture(model)
    candidates = list(ParameterGrid(param_grid))
    folds = list(KFold(n_splits=cv).split(x))
    members = []
    for c, p in enumerate(candidates):
        q = {k.replace("model__", ""): v for k, v in p.items()}
        for f, (tr, te) in enumerate(folds):
            members.append(Member(c, f, float(q["learning_rate"]), float(q["dropout_rate"]), int(q["batch_size"]),
                                  int(q["epochs"]), tr, te))
    scores = np.zeros((len(candidates), cv))
    epochs_run = np.zeros((len(candidates), cv), int)
    for g, (k, epochs) in enumerate(sorted({(mb.batch_size, mb.epochs) for mb in members})):
        group = [mb for mb in members if (mb.batch_size, mb.epochs) == (k, epochs)]
        sg = StackedGroup(dense, drops, model.get_weights(), group, x, y, validation_split, patience, seed + 7919 * g)
        sg.fit(epochs)
        ran = sg.epochs_run.numpy()
        for i, mb in enumerate(group):
            scores[mb.candidate, mb.fold] = r2_score(np.asarray(y).reshape(-1)[mb.test_idx],
                                                     sg.predict(i, x[mb.test_idx]))
            epochs_run[mb.candidate, mb.fold] = ran[i]
        if log:
            log(f"  grid: {len(group)} fits of batch size {k} trained together, "
                f"{int(ran.min())}-{int(ran.max())} epochs each")
    mean, std = scores.mean(1), scores.std(1)
    return {"params": candidates, "mean_test_score": mean, "std_test_score": std,
            "rank_test_score": rankdata(-mean, method="min").astype(int), "split_scores": scores,
            "epochs_run": epochs_run}


def refit(model, x: np.ndarray, y: np.ndarray, params: dict, patience: int, validation_split: float,
          seed: int) -> dict:
    """The best candidate's final fit on all of ``x`` as a one-member group; ``model`` receives its best weights.

    Returns:
        ``{"loss": [...], "val_loss": [...], "epochs_run": n}``, as the fit's Keras History would hold them.
    """
    q = {k.replace("model__", ""): v for k, v in params.items()}
    rows = np.arange(len(x))
    dense, drops = architecture(model)
    member = Member(0, 0, float(q["learning_rate"]), float(q["dropout_rate"]), int(q["batch_size"]),
                    int(q["epochs"]), rows, rows[:0])
    group = StackedGroup(dense, drops, model.get_weights(), [member], x, y, validation_split, patience, seed)
    group.fit(member.epochs)
    model.set_weights([v.numpy()[0] for wb in group.weights for v in wb])
    n = int(group.epochs_run.numpy()[0])
    return {"loss": [float(v[0]) for v in group.loss_history[:n]],
            "val_loss": [float(v[0]) for v in group.val_history[:n]], "epochs_run": n}
