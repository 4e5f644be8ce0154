"""The platform's units of work: one package per stage, pure logic in `core`, adapters in
`clients`, what every stage shares in `shared`.
"""
