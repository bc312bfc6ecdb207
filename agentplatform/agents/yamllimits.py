"""How big an agent file may be, checked before anything is built from it.

YAML anchors and aliases let a few hundred bytes stand for gigabytes: each level
of ``&a [*b, *b, ...]`` multiplies the one below. ruamel keeps an alias as one
shared node, so composing such a file is cheap; what explodes is everything after
(constructing plain values, validating, rendering). So the composed node graph is
measured *before* anything walks it as a tree: each node's expanded size and height
are computed once and reused wherever an alias points at it, which is linear in
the size of the graph and never expands it.

Limits (an agent file is a page of settings and a prompt; these are far above that):

* ``MAX_FILE_BYTES`` of text, checked before parsing;
* ``MAX_DEPTH`` levels of nesting, as written and as expanded;
* ``MAX_EXPANDED_BYTES``: roughly the size of the file with every alias written out
  (each scalar's text plus two bytes per node);
* ``MAX_NODES`` values after expansion (CPU cost follows the count of values too);
* an alias may not point at a node that contains it (a cycle never ends).
"""

from __future__ import annotations

from typing import Any

from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_FILE_BYTES = 256 * 1024
MAX_EXPANDED_BYTES = 256 * 1024
MAX_NODES = 10_000
MAX_DEPTH = 40
_NODE_BYTES = 2  # a separator and an indent, roughly, for every value written out


class TooLarge(ComposerError):
    """A limit above was exceeded; the message says which and where."""


def _too_large(problem: str, node: Node) -> TooLarge:
    return TooLarge(None, None, problem, node.start_mark)


class LimitedComposer(Composer):
    """ruamel's composer, refusing documents over the limits before they are constructed."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader=loader)
        self._nesting = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Checked while composing: composition recurses once per level as written.
        self._nesting += 1
        try:
            if self._nesting > MAX_DEPTH:
                event = self.parser.peek_event()
                raise TooLarge(None, None, f"nested deeper than {MAX_DEPTH} levels, the most "
                               "an agent file may have", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        if node is not None:
            check_expansion(node)
        return node


def check_expansion(root: Node) -> tuple[int, int, int]:
    """(expanded bytes, expanded values, expanded height) of ``root``; raises ``TooLarge``.

    Each distinct node is measured once (aliases share their target's figures), and
    the walk stops at the first limit crossed, so the cost is bounded by the graph as
    written, never by what it would expand to.
    """
    done: dict[int, tuple[int, int, int]] = {}
    open_: set[int] = set()

    def measure(node: Node, depth: int) -> tuple[int, int, int]:
        key = id(node)
        known = done.get(key)
        if known is None:
            if key in open_:
                raise _too_large("an alias refers to a value that contains it", node)
            open_.add(key)
            known = _measure_children(node, depth)
            open_.discard(key)
            done[key] = known
        size, count, height = known
        if depth + height > MAX_DEPTH:
            raise _too_large(f"aliases nest the file deeper than {MAX_DEPTH} levels, "
                             "the most an agent file may have", node)
        return known

    def _measure_children(node: Node, depth: int) -> tuple[int, int, int]:
        size, count, height = _NODE_BYTES, 1, 1
        if isinstance(node, ScalarNode):
            size += len(node.value)
        elif isinstance(node, (SequenceNode, MappingNode)):
            children = node.value if isinstance(node, SequenceNode) \
                else [part for pair in node.value for part in pair]
            for child in children:
                c_size, c_count, c_height = measure(child, depth + 1)
                size, count = size + c_size, count + c_count
                height = max(height, c_height + 1)
                if size > MAX_EXPANDED_BYTES:
                    raise _too_large(f"aliases expand the file past "
                                     f"{MAX_EXPANDED_BYTES // 1024} KiB, the most an agent "
                                     "file may hold", child)
                if count > MAX_NODES:
                    raise _too_large(f"aliases expand the file past {MAX_NODES} values, "
                                     "the most an agent file may hold", child)
        return size, count, height

    return measure(root, 0)
