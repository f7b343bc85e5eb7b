from clearhouse.accounts.model import Role
from tests.conftest import open_party, platform_fund


def test_fixture_builds_a_ledger(app):
    merchant = open_party(app, "m", (Role.MERCHANT_SETTLEMENT,))
    out = app.ledger.post("p1", "1002", "CNY", {"amount": 100})
    assert out.ok
    clearing = platform_fund(app, Role.CHANNEL_CLEARING, "wechatpay")
    assert app.ledger.balance(clearing).posted == 100
    assert merchant.fund_accounts[Role.MERCHANT_SETTLEMENT] > 0
