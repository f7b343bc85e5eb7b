"""The WeChat Pay API v3 channel: wire protocol (``protocol``) and the ``ChannelPort`` adapter."""
