datacenter = "dc1"
data_dir = "/opt/consul"
retry_join = ["10.0.0.1"]
service {
  name = "redis"
  port = 6379
  tags = ["cache"]
  check {
    ttl = "30s"
  }
}
acl {
  enabled = true
  tokens {
    default = "abc"
  }
}
