"""The PayPal channel: wire format (``protocol``) and the ``ChannelPort`` adapter."""
