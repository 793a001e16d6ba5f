"""Code shared by the algorithms of sb3_dqfd: demonstrations, replay buffers, experts."""
