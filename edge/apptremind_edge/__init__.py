"""The GraphQL edge: a Starlette + Strawberry BFF that reaches services only over gRPC."""
