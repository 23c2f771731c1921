"""Experimental feature flags (formancehq/numscript ``internal/flags``)."""

OVERDRAFT_FUNCTION = "experimental-overdraft-function"
GET_ASSET_FUNCTION = "experimental-get-asset-function"
GET_AMOUNT_FUNCTION = "experimental-get-amount-function"
ONEOF = "experimental-oneof"
ACCOUNT_INTERPOLATION = "experimental-account-interpolation"
MID_SCRIPT_FUNCTION_CALL = "experimental-mid-script-function-call"
ASSET_COLORS = "experimental-asset-colors"
ASSET_SCALING = "experimental-asset-scaling"

ALL_FLAGS = frozenset(
    {
        OVERDRAFT_FUNCTION,
        GET_ASSET_FUNCTION,
        GET_AMOUNT_FUNCTION,
        ONEOF,
        ACCOUNT_INTERPOLATION,
        MID_SCRIPT_FUNCTION_CALL,
        ASSET_COLORS,
        ASSET_SCALING,
    }
)
