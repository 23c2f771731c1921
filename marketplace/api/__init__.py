"""The marketplace's REST API (mounted at /api/v1/ by config.urls): restaurants, riders,
orders (create, assign a rider, deliver, refund), campaigns (create, fund, pause), top-ups,
and the books (payee balances, what is owed, balance sheet, defaulting risk). Thin: parse,
call one service or selector, shape. Staff only (session or token). Errors are JSON
`{"code", "message", ...}` (config.api.exception_handler), never a 500 for bad input."""
