"""scikit-learn's training arithmetic on nnfast's kernels: what ``nnfast.MLP`` does not offer.

- ``loss_grad``: scikit-learn's ``_backprop`` (loss with its conventions, per-sample weights,
  L2 term ``alpha/2 ΣW² / Σw``) in one call on the model's flat parameter buffer: the forward
  and backward GEMMs with their fused epilogues are nnfast's functional kernels
  (``dense_forward`` / ``dense_backward``); the gradient lands in ``model.flat_grads``, whose
  layout (every W, then every b) is scikit-learn's ``_pack`` layout. It serves ``lbfgs``,
  sample-weighted mini-batches and multi-output regression (whose reported loss scikit-learn
  averages over outputs as well as rows, while the gradient is that of the sum over outputs).
- ``Schedule``: the learning-rate bookkeeping of scikit-learn's SGD / Adam optimizers
  (``invscaling``, ``adaptive``, stopping); the update itself is ``nnfast.optim``'s fused step.
- ``make_optimizer``: the ``nnfast.optim`` optimizer that reproduces a solver's update.
"""
import numpy as np

from .. import optim
from ..dense import dense_backward, dense_forward

#: scikit-learn's activation names -> nnfast's.
HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
          "leaky_relu": "leaky_relu"}
#: scikit-learn's out_activation_ -> nnfast.MLP's output.
OUTPUT = {"softmax": "softmax", "logistic": "sigmoid", "identity": "identity"}


def _sklearn_loss(loss_name, out_activation):
    from sklearn.neural_network._base import LOSS_FUNCTIONS

    if loss_name == "log_loss" and out_activation == "logistic":
        loss_name = "binary_log_loss"
    return LOSS_FUNCTIONS[loss_name]


def _output(logits, out_activation):
    if out_activation == "softmax":
        logits = logits - logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
    elif out_activation == "logistic":
        from scipy.special import expit

        expit(logits, out=logits)
    return logits


def loss_grad(model, X, Y, sample_weight, alpha, loss_name, out_activation):
    """scikit-learn's mini-batch objective on (X, Y) and its gradient into ``model.flat_grads``.

    X: (m, n_features) in the model's dtype; Y: (m, n_outputs) float targets (one-hot or 0/1
    for classifiers); sample_weight: (m,) or None. Returns the loss as scikit-learn reports it.
    """
    hidden, slope = model.hidden, model.slope
    keep_z = hidden in ("relu", "leaky_relu")
    acts, zs = [X], [None]
    for layer in model.layers[:-1]:
        z = np.empty((X.shape[0], layer.W.shape[1]), model.dtype) if keep_z else None
        acts.append(dense_forward(acts[-1], layer.W, layer.b, hidden, slope=slope, z_out=z))
        zs.append(z)
    last = model.layers[-1]
    prob = _output(dense_forward(acts[-1], last.W, last.b, "identity"), out_activation)
    loss = _sklearn_loss(loss_name, out_activation)(Y, prob, sample_weight)
    delta = prob
    delta -= Y
    if sample_weight is None:
        sw_sum = X.shape[0]
    else:
        sw_sum = sample_weight.sum()
        delta *= sample_weight.reshape(-1, 1)
    delta /= sw_sum
    squares = 0.0
    for i in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[i]
        delta = dense_backward(delta, acts[i], layer.W, hidden if i else "identity",
                               z_prev=zs[i], slope=slope, need_dprev=i > 0, dW_out=layer.dW,
                               db_out=layer.db)[2]
        if alpha:
            layer.dW += (alpha / sw_sum) * layer.W
        squares += float(np.vdot(layer.W, layer.W))
    return float(loss) + 0.5 * alpha * squares / sw_sum


def make_optimizer(est, lr):
    """The ``nnfast.optim`` optimizer whose fused step is the solver's update."""
    if est.solver == "sgd":
        if est.momentum == 0:
            return optim.SGD(lr=lr)
        return optim.Momentum(lr=lr, beta=est.momentum, style="sklearn",
                              nesterov=bool(est.nesterovs_momentum))
    if est.solver == "adam":
        return optim.Adam(lr=lr, beta1=est.beta_1, beta2=est.beta_2, eps=est.epsilon,
                          style="sklearn")
    return optim.RMSprop(lr=lr, beta=est.beta_2, eps=est.epsilon)


class Schedule:
    """scikit-learn's ``SGDOptimizer`` / ``AdamOptimizer`` learning-rate logic, without the
    parameter update (Adam's bias correction is in ``nnfast.optim.Adam(style="sklearn")``)."""

    def __init__(self, est):
        self.learning_rate_init = float(est.learning_rate_init)
        self.learning_rate = self.learning_rate_init
        self.lr_schedule = est.learning_rate if est.solver == "sgd" else "constant"
        self.power_t = est.power_t

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False
