import pytest

from clearhouse.accounts.model import Role
from clearhouse.errors import ConfigurationError
from clearhouse.ledger.chart import ChartType, load_chart
from clearhouse.ledger.model import Side


def test_every_role_maps_to_a_leaf_with_its_normal_side():
    chart = load_chart()
    for role in Role:
        leaf = chart.leaf_for(role)
        assert leaf.is_leaf
    assert chart.leaf_for(Role.BUYER_BALANCE).type is ChartType.LIABILITY
    assert chart.leaf_for(Role.BUYER_BALANCE).normal_side is Side.CREDIT
    assert chart.leaf_for(Role.CHANNEL_CLEARING).normal_side is Side.DEBIT
    assert chart.leaf_for(Role.CHANNEL_FEES).type is ChartType.EXPENSE
    assert chart.leaf_for(Role.COMMISSION_INCOME).type is ChartType.INCOME


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[account]]\ncode = "1"\nname = "A"\n', "has no type"),
        (
            '[[account]]\ncode = "1"\nname = "A"\ntype = "asset"\n[[account]]\ncode = "1"\nname = "B"\ntype = "asset"\n',
            "duplicate",
        ),
        ('[[account]]\ncode = "1"\nname = "A"\ntype = "assets"\n', "bad type"),
        ('[[account]]\ncode = "2"\nparent = "9"\nname = "A"\n', "broken parent"),
        (
            '[[account]]\ncode = "1"\nname = "A"\ntype = "asset"\n[roles]\nescrow = "1"\n',
            "roles without a leaf",
        ),
        (
            '[[account]]\ncode = "1"\nname = "A"\ntype = "asset"\n[roles]\nnope = "1"\n',
            "unknown role",
        ),
    ],
)
def test_bad_charts_are_refused(text, message):
    with pytest.raises(ConfigurationError, match=message):
        load_chart(text)
