enum _PlaceholderUpstreams {}
