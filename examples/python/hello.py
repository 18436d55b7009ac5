import sys
import agentbus
key_dir, bundle, tcti = sys.argv[1:4]
key = agentbus.open_or_create_identity(key_dir, "MONITOR", tpm=tcti)
with agentbus.Agent(identity=key, bundle=bundle) as agent:
    agent.on_request(lambda m: b'{"load": 0.42}')
    agent.subscribe("directives/all", lambda m: print("directive:", m.payload))
    agent.publish("metrics/cpu", b'{"cpu": 0.42}', content_type="application/json")
    print(agent.name, "published metrics/cpu; sent", agent.stats().sent)
