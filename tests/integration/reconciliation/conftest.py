from tests.gateway_support import channel, gateway, merchant

__all__ = ["channel", "gateway", "merchant"]
