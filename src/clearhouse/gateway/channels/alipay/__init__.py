"""The Alipay OpenAPI channel: wire protocol (``protocol``) and the ``ChannelPort`` adapter."""
