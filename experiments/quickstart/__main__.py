import json

from experiments.quickstart import main

json.dumps(main())
