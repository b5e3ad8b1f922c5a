from experiments.cnn_dnn import main

main()
