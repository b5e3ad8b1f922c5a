from experiments.layer_parallel import main

main()
