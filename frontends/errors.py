"""Errors raised by the frontends; each names the file and model node it is about."""

from __future__ import annotations


class FrontendError(ValueError):
    """A model the frontend cannot read, e.g. ``model.onnx: node 'Conv_3' (op Conv): <reason>``."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        node_name: str | None = None,
        op_type: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.node_name = node_name
        self.op_type = op_type
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        # Callers may already have put the file first in the message; say it once.
        if self.file and not self.message.startswith(f"{self.file}:"):
            where.append(self.file)
        if self.node_name is not None or self.op_type is not None:
            node = f"node '{self.node_name}'" if self.node_name else "node"
            where.append(f"{node} (op {self.op_type})" if self.op_type else node)
        return ": ".join(where + [self.message])

    def located(self, file: str | None) -> FrontendError:
        """This error with ``file`` filled in when it had none (the same object, re-rendered)."""
        if self.file is None and file is not None:
            self.file = file
            self.args = (self._render(),)
        return self

    def at_node(self, node_name: str | None, op_type: str | None) -> FrontendError:
        """This error with the node filled in when it named none (the same object, re-rendered)."""
        if self.node_name is None and self.op_type is None:
            self.node_name, self.op_type = node_name, op_type
            self.args = (self._render(),)
        return self

    def __str__(self) -> str:
        return self._render()


class UnsupportedOpError(FrontendError):
    """A model node whose op, or this use of the op (an attribute value, a dtype), has no IR mapping."""
