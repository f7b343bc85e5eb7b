"""The wallet: money movements of a buyer's balance (top-up, transfer, withdrawal) under the
identity's KYC limits."""
