from experiments.partitions import main

main()
