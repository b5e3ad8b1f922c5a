from experiments.payoff import main

main()
