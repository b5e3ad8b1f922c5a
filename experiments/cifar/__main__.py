from experiments.cifar import main

main()
