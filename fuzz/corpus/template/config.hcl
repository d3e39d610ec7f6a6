consul { address = "127.0.0.1:8500" }
wait { min = "1s" max = "4s" }
template {
  source = "in.ctmpl"
  destination = "out.conf"
  command = "nginx -s reload"
  perms = 0644
}
