"""A query-cost limit: each field costs 1, and a list field multiplies what it selects by its page size.

Depth alone does not stop a wide query (`staff(first: 200) { ... }` under aliases); cost does, before any
resolver runs.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)

# Paginated fields and the page size they use when `first` is not a literal.
PAGED_FIELDS = {"staff": 50, "services": 50, "members": 50, "dateOverrides": 50, "appointments": 50}
MAX_PAGE = 200


def max_complexity_rule(limit: int) -> type[ValidationRule]:
    class MaxComplexity(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            cost = self._cost(node.selection_set, set())
            if cost > limit:
                self.report_error(GraphQLError(f"query complexity {cost} exceeds the limit of {limit}", node))

        def _cost(self, selections: SelectionSetNode | None, seen: set[str]) -> int:
            if selections is None:
                return 0
            total = 0
            for selection in selections.selections:
                if isinstance(selection, FieldNode):
                    total += 1 + _page_size(selection) * self._cost(selection.selection_set, seen)
                elif isinstance(selection, InlineFragmentNode):
                    total += self._cost(selection.selection_set, seen)
                elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                    fragment = self.context.get_fragment(selection.name.value)
                    if fragment is not None:
                        total += self._cost(fragment.selection_set, seen | {selection.name.value})
            return total

    return MaxComplexity


def _page_size(field: FieldNode) -> int:
    default = PAGED_FIELDS.get(field.name.value)
    if default is None:
        return 1
    for argument in field.arguments or ():
        if argument.name.value == "first":
            if isinstance(argument.value, IntValueNode):
                return max(1, min(int(argument.value.value), MAX_PAGE))
            return MAX_PAGE  # a variable: assume the largest page the services allow
    return default
