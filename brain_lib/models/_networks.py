"""The PyTorch networks of the deep model types; imported only when one is built.

Every network maps a batch of windows ``(batch, window, channels)`` — the standardised
features of the last ``window`` bars plus a bar-present channel — to one standardised
prediction per window ``(batch,)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

__all__ = ["LSTMAttention", "TemporalCNN", "TransformerEncoderNet"]


class LSTMAttention(nn.Module):
    r"""An LSTM over the window with additive attention over its hidden states.

    :math:`h_1..h_N` = LSTM(window); :math:`a = \mathrm{softmax}_s(v^\top \tanh(W h_s))`;
    the head reads :math:`[\sum_s a_s h_s, h_N]` (the attended context and the last
    state)."""

    def __init__(self, n_inputs: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            n_inputs,
            hidden,
            num_layers=layers,
            batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.score = nn.Sequential(
            nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False)
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.lstm(x)
        weights = torch.softmax(self.score(states).squeeze(-1), dim=1)
        context = (weights.unsqueeze(-1) * states).sum(dim=1)
        out: torch.Tensor = self.head(torch.cat([context, states[:, -1]], dim=1))
        return out.squeeze(-1)


class TransformerEncoderNet(nn.Module):
    """A small Transformer encoder: linear embedding plus a learned position embedding,
    pre-norm encoder layers, the head reads the last bar's token."""

    def __init__(
        self, n_inputs: int, window: int, d_model: int, heads: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(n_inputs, d_model)
        self.position = nn.Parameter(torch.zeros(1, window, d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            dim_feedforward=2 * d_model,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(self.embed(x) + self.position)
        out: torch.Tensor = self.head(self.norm(tokens[:, -1]))
        return out.squeeze(-1)


class _CausalBlock(nn.Module):
    """Dilated causal convolution (left padding only), ReLU, dropout, residual."""

    def __init__(
        self, n_in: int, n_out: int, kernel_size: int, dilation: int, dropout: float
    ) -> None:
        super().__init__()
        self.pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(n_in, n_out, kernel_size, dilation=dilation)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(n_in, n_out, 1) if n_in != n_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.drop(torch.relu(self.conv(functional.pad(x, (self.pad, 0)))))
        skipped: torch.Tensor = self.skip(x)
        return out + skipped


class TemporalCNN(nn.Module):
    """Temporal convolutions: dilated causal blocks (dilation 1, 2, 4, …); the head reads
    the last bar's channels and their mean over the window."""

    def __init__(
        self, n_inputs: int, channels: int, kernel_size: int, layers: int, dropout: float
    ) -> None:
        super().__init__()
        blocks = [
            _CausalBlock(n_inputs if i == 0 else channels, channels, kernel_size, 2**i, dropout)
            for i in range(layers)
        ]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(2 * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.blocks(x.transpose(1, 2))
        out: torch.Tensor = self.head(torch.cat([z[:, :, -1], z.mean(dim=2)], dim=1))
        return out.squeeze(-1)
