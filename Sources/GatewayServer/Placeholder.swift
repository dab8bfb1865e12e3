enum _PlaceholderGatewayServer {}
